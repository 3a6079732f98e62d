"""Deploy and operate the LiteLLM proxy as a Docker container on your own hosts, over SSH."""
