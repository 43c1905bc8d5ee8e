"""Applications that use Conveyor end to end (docs/examples.md)."""
