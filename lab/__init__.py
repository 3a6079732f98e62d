"""The lab: this checkout's test infrastructure and try-it-locally target (never part of the
litedeploy package). `lab.target` brings the local target up and down; the other modules are its
parts (sshds, network namespaces, the image, the registry, the systemd host, the locks)."""
