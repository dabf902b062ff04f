"""Examples built on jaxgraph."""
