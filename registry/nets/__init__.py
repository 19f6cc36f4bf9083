"""The networks' PyTorch modules, imported when a model is built.

``registry.models`` registers the architectures and variants, which commands that only
read records list and look up without importing torch (issue 29); each architecture's
builder imports its network from here.
"""
