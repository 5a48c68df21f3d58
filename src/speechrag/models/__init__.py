"""The neural parts of the end-to-end retrievers, one file per concept."""
