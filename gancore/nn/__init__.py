"""Drop-in modules built on gancore.ops."""

__all__: list[str] = []
