from semiseg.registry import Registry

METHODS: Registry = Registry("method")
