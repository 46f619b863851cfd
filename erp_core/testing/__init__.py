"""Test support shipped with the kernel: pytest fixtures for the kernel, plugins and connectors."""
