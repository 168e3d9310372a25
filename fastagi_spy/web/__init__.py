"""HTTP: the live JSON snapshot and, later, the VICIdial API and the Live Monitor page."""
