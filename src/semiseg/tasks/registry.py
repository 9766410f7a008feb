from semiseg.registry import Registry

TASKS: Registry = Registry("task")
