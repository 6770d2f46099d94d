"""One mapping from IR names to C identifiers, injective for a given program."""
import re


def c_ident(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not s or s[0].isdigit():
        s = "_" + s
    return s


class CNames:
    """Stable, collision-free C names: the first tensor to claim an identifier keeps it."""

    def __init__(self):
        self._by_name: dict[str, str] = {}
        self._used: set[str] = set()

    def __call__(self, name: str) -> str:
        if name not in self._by_name:
            base = c_ident(name)
            ident, k = base, 1
            while ident in self._used:
                k += 1
                ident = f"{base}_{k}"
            self._used.add(ident)
            self._by_name[name] = ident
        return self._by_name[name]
