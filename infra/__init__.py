"""The Pulumi program (one component per concern, composed in infra/__main__.py) and its offline plan."""
