"""The model layer: one interface, providers, and the gateway behaviours that wrap them."""
