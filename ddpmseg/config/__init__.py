"""The workflow's configuration: schema validation, registry, cross-checks, variants, image sets and path templates."""
