"""Task plugins, one package each; found through the `harness.core.task` entry points."""
