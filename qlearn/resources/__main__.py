"""``python -m qlearn.resources [NAME]``: list the packaged files, or print one (e.g. demo.yaml)."""
import sys

from . import resource


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        for node in sorted(resource().iterdir(), key=lambda n: n.name):
            if not node.name.startswith("_"):
                print(node.name + ("/" if node.is_dir() else ""))
        return
    node = resource(*argv[0].split("/"))
    if not node.is_file():
        sys.exit(f"qlearn.resources: no packaged file {argv[0]!r} (list them: python -m qlearn.resources)")
    sys.stdout.write(node.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
