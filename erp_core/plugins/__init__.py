"""The plugin system: manifests found by stevedore, behaviour dispatched by pluggy."""
