"""Console pages: one module per page family, each with its own APIRouter (see docs/console.md)."""
