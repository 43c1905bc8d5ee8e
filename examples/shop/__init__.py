"""A shop that sends a receipt for every order: the order's row and its ``send_receipt`` job
are written in one transaction, through the application's SQLAlchemy session; the
Conveyor API is mounted beside the shop's endpoints (docs/examples.md)."""
