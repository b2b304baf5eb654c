"""The HTTP API: routes (internal and public), request/response models, error mapping, HTML pages."""
