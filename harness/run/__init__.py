"""Running tables: planning what is left, executing cells (local, Ray), the runner."""
