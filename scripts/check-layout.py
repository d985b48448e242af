#!/usr/bin/env python3
"""Architecture checks of the geotrack workspace, run by `make lint` (and so by CI).

geotrack is one crate per capability: `tracker` (ingest), `fences` (the pure geofence
engine), `alerts` (evaluation, alert store, hub, webhooks), `tiles` (vector tiles), `dispatch` (live spatial queries), `tools`
(clients of a running service) and the service crate at the root (`src/`: configuration,
HTTP routes, start-up). These rules keep that shape from eroding; each one is a check:

1. No import loops between files within a crate. Every `.rs` file of a crate's `src/` tree
   is mapped to its module path (`lib.rs`/`main.rs`: the crate root; `a.rs` and `a/mod.rs`:
   module `a`; nested files likewise). A file depends on another when its code mentions
   `crate::x::y` (in `use` items, grouped `use crate::{a, b::c}` included, or in any path
   in code), `super::x` or `self::x`; a mention resolves to the longest module path that
   exists, so `crate::alerts::hub::Published` is a dependency on `alerts/hub.rs`. Comments,
   doc comments and string literals are not code. A parent's `mod x;` declarations and its
   `pub use` re-exports of its own descendants are not dependencies (declaring and
   re-exporting children is not a loop); every other edge between distinct files counts,
   parent-to-child and child-to-parent included. `#[cfg(test)]` modules and `tests.rs`
   files are ignored. Every strongly connected component of more than one file is
   reported as cycles (for each of its edges, the shortest cycle through it). Why: a
   loop means the files cannot be understood, tested or moved to another crate apart.
   `main.rs` and `lib.rs` are separate crates: files reachable from `main.rs` through
   `mod` declarations that `lib.rs` does not declare belong to the binary.

2. File length: no `.rs` file under a crate's `src/` is longer than 600 lines, unit-test
   files (`tests.rs`) included: a file is a file. Integration tests (`tests/`) and
   benches are exempt. Why: a long file is several modules waiting to be split.

3. Function length: no function of production code (crate `src/` trees without
   `#[cfg(test)]` modules and `tests.rs` files) is longer than 80 lines, from the line
   holding `fn` to the line of its closing brace. Why: small functions are read, reviewed
   and tested; long ones accrete.

4. Domain crates know nothing of HTTP frameworks: `tracker`, `fences`, `alerts`, `tiles` and
   `dispatch` must not depend, directly or transitively (normal and build dependencies of the
   resolved graph of `cargo metadata`; dev-dependencies are test code), on `axum`,
   `tower-http` or `utoipa` (or their `axum-*`/`utoipa-*` parts). `fences` is pure: no
   `tokio` and no `sqlx` either. One exemption: what an HTTP client (`reqwest`, for the
   alert webhooks) builds on internally is not followed for the HTTP rule (reqwest 0.13
   always pulls `tower-http`); a direct dependency on a framework always fails. Without a
   resolved graph (`cargo metadata --frozen` failing: no network, a stale `Cargo.lock`,
   which this script never rewrites) the crates' `Cargo.toml` files are read instead:
   direct dependencies, and those of the workspace crates they depend on.
   Why: the domain is the part reused and tested without a server; HTTP belongs to the
   service crate.

5. Service crate share: the root package's `src/` holds less than 35% of the workspace's
   production lines (non-blank lines of crate `src/` trees, without `#[cfg(test)]`
   modules and `tests.rs` files; `tests/` and `benches/` are not production). The figure
   is always printed. Why: capabilities live in their own crates; the service crate
   only wires them to HTTP.

6. Nothing cites a file outside the repository: no `.rs`, `.md`, `.toml`, `.sh` or `.py`
   file known to git (tracked, or untracked and not ignored) contains `shared/PROTOCOLS`
   or `../shared` (`web/vendor/` and this script excepted). Why: a clone of this
   repository must be complete; a reference to a sibling checkout is dead for everyone
   else.

Output: one `path:line: message` line per violation, then a summary. Exit status 1 when
there is any violation, 0 otherwise. The code does not need to compile: sources and
`Cargo.toml` files are read, and `cargo metadata` is used when it works.

Usage: python3 scripts/check-layout.py [--quiet] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE_LINES = 600
MAX_FN_LINES = 80
MAX_SERVICE_SHARE = 0.35
DOMAIN_CRATES = ("tracker", "fences", "alerts", "tiles", "dispatch")
HTTP_FRAMEWORKS = ("axum", "tower-http", "utoipa")
PURE_CRATES = {"fences": ("tokio", "sqlx")}
# HTTP clients a domain crate may use (the alert webhooks): what they build on internally
# (reqwest 0.13 always pulls tower-http for redirects) is not the crate knowing a framework.
HTTP_CLIENTS = ("reqwest",)
OUTSIDE_CITATIONS = ("shared/PROTOCOLS", "../shared")
CITATION_SUFFIXES = (".rs", ".md", ".toml", ".sh", ".py")
CITATION_EXEMPT_DIRS = ("web/vendor/",)

CHECKS = (
    ("loops", "import loops within a crate"),
    ("file-length", f"file length (max {MAX_FILE_LINES} lines)"),
    ("fn-length", f"function length (max {MAX_FN_LINES} lines)"),
    ("domain-deps", "domain crates without HTTP frameworks"),
    ("service-share", f"service crate share (under {MAX_SERVICE_SHARE:.0%})"),
    ("citations", "no citation of files outside the repository"),
)


# --------------------------------------------------------------------------------------
# Rust lexing: just enough to tell code from comments, strings and character literals.
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tok:
    kind: str  # "id" (identifier or keyword), "p" (punctuation), "str", "lit", "life"
    text: str
    line: int


RAW_STRING = re.compile(r'(?:br|cr|r)(#*)"')
IDENT = re.compile(r"[^\W\d]\w*")
NUMBER = re.compile(r"\d[\w]*(?:\.\d[\w]*)?")


def tokenize(src: str) -> list[Tok]:
    """Rust source to tokens; comments (doc comments too) are dropped, literals kept whole."""
    toks: list[Tok] = []
    i, n, line = 0, len(src), 1
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += src[i] == "\n"
                    i += 1
            continue
        if c in "rbc":
            m = RAW_STRING.match(src, i)
            if m:
                close = '"' + m.group(1)
                j = src.find(close, m.end())
                j = n if j < 0 else j
                text = src[m.end() : j]
                toks.append(Tok("str", text, line))
                line += text.count("\n")
                i = j + len(close)
                continue
        if c == '"' or (c in "bc" and src.startswith('"', i + 1)):
            start, j = line, i + (1 if c == '"' else 2)
            body = j
            while j < n:
                ch = src[j]
                if ch == "\\":
                    line += src.startswith("\n", j + 1)
                    j += 2
                    continue
                if ch == '"':
                    break
                line += ch == "\n"
                j += 1
            toks.append(Tok("str", src[body:j], start))
            i = j + 1
            continue
        if c == "'" or (c == "b" and src.startswith("'", i + 1)):
            k = i + (1 if c == "'" else 2)
            if src.startswith("\\", k):  # '\n', '\'', '\u{..}'
                j = src.find("'", k + 2)
                j = n if j < 0 else j
                toks.append(Tok("lit", src[i : j + 1], line))
                i = j + 1
                continue
            if k + 1 < n and src[k + 1] == "'" and src[k] != "\n":  # 'a', '{', '"'
                toks.append(Tok("lit", src[i : k + 2], line))
                i = k + 2
                continue
            m = IDENT.match(src, k)  # a lifetime or a label
            end = m.end() if m else k
            toks.append(Tok("life", src[i:end], line))
            i = end
            continue
        if c == "r" and src.startswith("#", i + 1):
            m = IDENT.match(src, i + 2)
            if m:  # raw identifier r#type
                toks.append(Tok("id", m.group(), line))
                i = m.end()
                continue
        m = IDENT.match(src, i)
        if m:
            toks.append(Tok("id", m.group(), line))
            i = m.end()
            continue
        if c.isdigit():
            m = NUMBER.match(src, i)
            toks.append(Tok("lit", m.group(), line))
            i = m.end()
            continue
        if src.startswith("::", i):
            toks.append(Tok("p", "::", line))
            i += 2
            continue
        toks.append(Tok("p", c, line))
        i += 1
    return toks


def is_p(tok: Tok | None, text: str) -> bool:
    return tok is not None and tok.kind == "p" and tok.text == text


def is_id(tok: Tok | None, text: str | None = None) -> bool:
    return tok is not None and tok.kind == "id" and (text is None or tok.text == text)


def at(toks: list[Tok], i: int) -> Tok | None:
    return toks[i] if 0 <= i < len(toks) else None


def matching(toks: list[Tok], i: int, open_: str, close: str) -> int:
    """Index of the token closing the bracket opened at `i` (the last index if unclosed)."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind == "p":
            if toks[j].text == open_:
                depth += 1
            elif toks[j].text == close:
                depth -= 1
                if depth == 0:
                    return j
    return len(toks) - 1


def is_cfg_test(toks: list[Tok], i: int) -> bool:
    """`#[cfg(test)]` starts at `i`."""
    want = ("#", "[", "cfg", "(", "test", ")", "]")
    return all(at(toks, i + k) is not None and at(toks, i + k).text == w for k, w in enumerate(want))


def skip_attributes_and_visibility(toks: list[Tok], i: int) -> int:
    while True:
        if is_p(at(toks, i), "#") and is_p(at(toks, i + 1), "["):
            i = matching(toks, i + 1, "[", "]") + 1
        elif is_id(at(toks, i), "pub"):
            i += 1
            if is_p(at(toks, i), "("):
                i = matching(toks, i, "(", ")") + 1
        else:
            return i


# --------------------------------------------------------------------------------------
# One source file: production tokens, test ranges, module declarations, path mentions.
# --------------------------------------------------------------------------------------


@dataclass
class Mention:
    module: tuple[str, ...]  # inline-module prefix inside the file, where the mention is
    segments: list[str]  # e.g. ["crate", "alerts", "hub", "Published"] or ["super", "x"]
    line: int
    pub_use: bool  # part of a `pub use` (any visibility) item


@dataclass
class ModDecl:
    name: str
    inline: tuple[str, ...]  # inline modules of the file the declaration sits in
    path_attr: str | None
    line: int
    test: bool


@dataclass
class SourceFile:
    path: Path
    lines: list[str]
    prod: list[Tok]  # tokens outside `#[cfg(test)]` modules
    test_ranges: list[tuple[int, int]]  # 1-based inclusive line ranges of test modules
    whole_test: bool  # `#![cfg(test)]`
    decls: list[ModDecl] = field(default_factory=list)
    inline_mods: list[tuple[str, ...]] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)


def strip_test_modules(toks: list[Tok]) -> tuple[list[Tok], list[tuple[int, int]], list[ModDecl], bool]:
    kept: list[Tok] = []
    ranges: list[tuple[int, int]] = []
    test_decls: list[ModDecl] = []
    whole = False
    i = 0
    while i < len(toks):
        if is_p(toks[i], "#") and is_p(at(toks, i + 1), "!") and is_cfg_test(
            [toks[i]] + toks[i + 2 : i + 8], 0
        ):
            whole = True
        if is_cfg_test(toks, i):
            j = skip_attributes_and_visibility(toks, i + 7)
            if is_id(at(toks, j), "mod") and is_id(at(toks, j + 1)):
                if is_p(at(toks, j + 2), "{"):
                    end = matching(toks, j + 2, "{", "}")
                    ranges.append((toks[i].line, toks[end].line))
                    i = end + 1
                    continue
                if is_p(at(toks, j + 2), ";"):
                    path_attr = find_path_attr(toks, i, j)
                    test_decls.append(ModDecl(toks[j + 1].text, (), path_attr, toks[j].line, True))
                    ranges.append((toks[i].line, toks[j + 2].line))
                    i = j + 3
                    continue
        kept.append(toks[i])
        i += 1
    return kept, ranges, test_decls, whole


def find_path_attr(toks: list[Tok], start: int, end: int) -> str | None:
    for k in range(start, end):
        if (
            is_p(toks[k], "[")
            and is_id(at(toks, k + 1), "path")
            and is_p(at(toks, k + 2), "=")
            and at(toks, k + 3) is not None
            and toks[k + 3].kind == "str"
        ):
            return toks[k + 3].text
    return None


def parse_rest(toks: list[Tok], i: int, segs: list[str], line: int) -> tuple[list[tuple[list[str], int]], int]:
    """Continue a path at `i` (expecting `::`); returns its leaves (use trees have several)."""
    while is_p(at(toks, i), "::"):
        nxt = at(toks, i + 1)
        if is_id(nxt):
            segs = segs + [nxt.text]
            i += 2
        elif is_p(nxt, "{"):
            return parse_group(toks, i + 1, segs)
        elif is_p(nxt, "*"):
            return [(segs, line)], i + 2
        else:
            break
    return [(segs, line)], i


def parse_group(toks: list[Tok], i: int, prefix: list[str]) -> tuple[list[tuple[list[str], int]], int]:
    """A use-tree group `{a, b::c, d::{e, f}, self, g as h}` opened at `i`."""
    leaves: list[tuple[list[str], int]] = []
    i += 1
    while i < len(toks):
        tok = toks[i]
        if is_p(tok, "}"):
            return leaves, i + 1
        if is_p(tok, "{"):
            more, i = parse_group(toks, i, prefix)
            leaves += more
        elif is_id(tok, "as"):
            i += 2
        elif tok.kind == "id":
            more, i = parse_rest(toks, i + 1, prefix + [tok.text], tok.line)
            leaves += more
        elif is_p(tok, "*"):
            leaves.append((prefix, tok.line))
            i += 1
        else:
            i += 1
    return leaves, i


def is_pub_use(toks: list[Tok], i: int) -> bool:
    """The `use` at `i` has a visibility (`pub`, `pub(crate)`, `pub(in ..)`)."""
    prev = at(toks, i - 1)
    if is_id(prev, "pub"):
        return True
    if is_p(prev, ")"):
        depth = 0
        for k in range(i - 1, -1, -1):
            if is_p(toks[k], ")"):
                depth += 1
            elif is_p(toks[k], "("):
                depth -= 1
                if depth == 0:
                    return is_id(at(toks, k - 1), "pub")
    return False


def analyse(path: Path) -> SourceFile:
    text = path.read_text(encoding="utf-8", errors="replace")
    prod, ranges, test_decls, whole = strip_test_modules(tokenize(text))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a final newline ends the last line, it does not start another
    sf = SourceFile(path, lines, prod, ranges, whole, decls=list(test_decls))
    toks = prod
    depth = 0
    inline: list[tuple[str, int]] = []  # (module name, brace depth inside it)
    in_use = pub_use = False
    path_attr: str | None = None
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "p":
            if tok.text == "{":
                depth += 1
            elif tok.text == "}":
                if inline and inline[-1][1] == depth:
                    inline.pop()
                depth -= 1
                path_attr = None
            elif tok.text == ";":
                in_use = pub_use = False
                path_attr = None
            elif tok.text == "#" and is_p(at(toks, i + 1), "["):
                end = matching(toks, i + 1, "[", "]")
                path_attr = find_path_attr(toks, i, end) or path_attr
                i = end + 1
                continue
            i += 1
            continue
        if tok.kind != "id":
            i += 1
            continue
        prefix = tuple(name for name, _ in inline)
        if tok.text == "mod" and is_id(at(toks, i + 1)):
            name = toks[i + 1].text
            if is_p(at(toks, i + 2), ";"):
                sf.decls.append(ModDecl(name, prefix, path_attr, tok.line, False))
            elif is_p(at(toks, i + 2), "{"):
                inline.append((name, depth + 1))
                sf.inline_mods.append(prefix + (name,))
            path_attr = None
            i += 2
            continue
        if tok.text == "use":
            in_use, pub_use = True, is_pub_use(toks, i)
        if (
            tok.text in ("crate", "super", "self")
            and is_p(at(toks, i + 1), "::")
            and not is_p(at(toks, i - 1), "::")
            and not is_id(at(toks, i - 1), "in")  # pub(in crate::x): a visibility
        ):
            leaves, i = parse_rest(toks, i + 1, [tok.text], tok.line)
            for segs, line in leaves:
                sf.mentions.append(Mention(prefix, segs, line, in_use and pub_use))
            continue
        i += 1
    return sf


# --------------------------------------------------------------------------------------
# Workspace: packages, crates (targets) and their module trees.
# --------------------------------------------------------------------------------------


@dataclass
class Package:
    name: str
    dir: Path
    manifest: Path
    lib: Path | None
    bins: list[Path]
    is_root: bool


@dataclass
class Crate:
    label: str
    root: Path
    modules: dict[tuple[str, ...], Path] = field(default_factory=dict)  # inline modules too
    file_module: dict[Path, tuple[str, ...]] = field(default_factory=dict)


class Workspace:
    def __init__(self, root: Path, notes: list[str]):
        self.root = root
        self.notes = notes
        self.cargo = os.environ.get("CARGO", "cargo")
        self.packages = self._packages()
        self._sources: dict[Path, SourceFile] = {}
        self.test_files: set[Path] = set()

    def rel(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def cargo_metadata(self, resolved: bool) -> dict | None:
        cmd = [self.cargo, "metadata", "--format-version", "1"]
        # --frozen: offline, and never rewrite Cargo.lock (a stale lock falls back to manifests)
        cmd += ["--frozen"] if resolved else ["--no-deps"]
        try:
            out = subprocess.run(
                cmd, cwd=self.root, capture_output=True, text=True, timeout=300, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            self.notes.append(f"`{' '.join(cmd)}` failed: {error}")
            return None
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            self.notes.append(f"`{' '.join(cmd)}` failed: {last}")
            return None
        return json.loads(out.stdout)

    def _packages(self) -> list[Package]:
        meta = self.cargo_metadata(resolved=False)
        packages = []
        if meta is not None:
            members = set(meta["workspace_members"])
            for pkg in meta["packages"]:
                if pkg["id"] not in members:
                    continue
                manifest = Path(pkg["manifest_path"]).resolve()
                lib, bins = None, []
                for target in pkg["targets"]:
                    src = Path(target["src_path"]).resolve()
                    if not src.is_relative_to(manifest.parent / "src"):
                        continue
                    if "bin" in target["kind"]:
                        bins.append(src)
                    elif any(k.endswith("lib") or k == "proc-macro" for k in target["kind"]):
                        lib = src
                packages.append(
                    Package(pkg["name"], manifest.parent, manifest, lib, sorted(bins),
                            manifest.parent == self.root)
                )
        else:
            packages = self._packages_from_manifests()
        return sorted(packages, key=lambda p: (not p.is_root, p.name))

    def _packages_from_manifests(self) -> list[Package]:
        root_manifest = tomllib.loads((self.root / "Cargo.toml").read_text())
        dirs = [self.root] if "package" in root_manifest else []
        for pattern in root_manifest.get("workspace", {}).get("members", []):
            dirs += sorted(p for p in self.root.glob(pattern) if (p / "Cargo.toml").is_file())
        packages = []
        for d in dirs:
            manifest = tomllib.loads((d / "Cargo.toml").read_text())
            name = manifest.get("package", {}).get("name", d.name)
            lib = d / "src" / "lib.rs"
            bins = [d / "src" / "main.rs"] if (d / "src" / "main.rs").is_file() else []
            bins += sorted((d / "src" / "bin").glob("*.rs"))
            bins += sorted((d / "src" / "bin").glob("*/main.rs"))
            packages.append(
                Package(name, d.resolve(), (d / "Cargo.toml").resolve(),
                        lib.resolve() if lib.is_file() else None,
                        [b.resolve() for b in bins], d.resolve() == self.root)
            )
        return packages

    def source(self, path: Path) -> SourceFile:
        if path not in self._sources:
            self._sources[path] = analyse(path)
        return self._sources[path]

    def src_files(self, pkg: Package) -> list[Path]:
        src = pkg.dir / "src"
        return sorted(p.resolve() for p in src.rglob("*.rs")) if src.is_dir() else []

    def is_test_file(self, path: Path) -> bool:
        return path.name == "tests.rs" or path in self.test_files or self.source(path).whole_test

    def _walk(self, root: Path) -> dict[Path, tuple[str, ...]]:
        """Files reachable from a crate root through `mod x;` declarations, with module paths."""
        found = {root: ()}
        queue = deque([root])
        while queue:
            path = queue.popleft()
            module = found[path]
            mod_rs = path == root or path.name == "mod.rs"
            base = path.parent if mod_rs else path.parent / path.stem
            for decl in self.source(path).decls:
                if decl.path_attr is not None:
                    candidates = [path.parent.joinpath(*decl.inline, decl.path_attr)]
                else:
                    d = base.joinpath(*decl.inline)
                    candidates = [d / f"{decl.name}.rs", d / decl.name / "mod.rs"]
                child = next((c.resolve() for c in candidates if c.is_file()), None)
                if child is None:
                    if not decl.test:
                        self.notes.append(
                            f"{self.rel(path)}:{decl.line}: `mod {decl.name};` has no file"
                            f" ({self.rel(candidates[0])})"
                        )
                    continue
                if decl.test:
                    self.test_files.add(child)
                    continue
                if child not in found:
                    found[child] = module + decl.inline + (decl.name,)
                    queue.append(child)
        return found

    def crates(self) -> list[Crate]:
        crates: list[Crate] = []
        for pkg in self.packages:
            lib_tree = self._walk(pkg.lib) if pkg.lib else {}
            bin_crates = []
            claimed = set(lib_tree)
            for bin_root in pkg.bins:
                tree = {f: m for f, m in self._walk(bin_root).items() if f == bin_root or f not in lib_tree}
                claimed |= set(tree)
                label = f"{pkg.name} (bin {self.rel(bin_root)})"
                bin_crates.append(self._crate(label, bin_root, tree))
            orphans = [f for f in self.src_files(pkg) if f not in claimed]
            src = pkg.dir / "src"
            for f in orphans:
                if not self.is_test_file(f):
                    self.notes.append(f"{self.rel(f)}: not declared by any module of {pkg.name}")
            if pkg.lib or not bin_crates:
                tree = dict(lib_tree)
                for f in orphans:  # undeclared files: module path from the file path
                    parts = f.relative_to(src).with_suffix("").parts
                    parts = parts[:-1] if parts[-1] == "mod" else parts
                    if parts not in tree.values():
                        tree[f] = parts
                label = f"{pkg.name} (lib)" if pkg.lib else pkg.name
                crates.append(self._crate(label, pkg.lib or src / "lib.rs", tree))
            crates += bin_crates
        return crates

    def _crate(self, label: str, root: Path, tree: dict[Path, tuple[str, ...]]) -> Crate:
        crate = Crate(label, root)
        for f, module in sorted(tree.items(), key=lambda kv: (len(kv[1]), kv[1])):
            if self.is_test_file(f):
                continue
            crate.file_module[f] = module
            crate.modules.setdefault(module, f)
            for inner in self.source(f).inline_mods:
                crate.modules.setdefault(module + inner, f)
        return crate


# --------------------------------------------------------------------------------------
# The checks. Each returns violations as (path, line, message).
# --------------------------------------------------------------------------------------

Violation = tuple[str, int, str]


def resolve(crate: Crate, file: Path, mention: Mention) -> Path | None:
    here = crate.file_module[file] + mention.module
    segs = mention.segments
    if segs[0] == "crate":
        target = segs[1:]
    elif segs[0] == "self":
        target = list(here) + segs[1:]
    else:
        ups = 0
        while ups < len(segs) and segs[ups] == "super":
            ups += 1
        if ups > len(here):
            return None
        target = list(here[: len(here) - ups]) + segs[ups:]
    target = [s for s in target if s != "self"]
    for k in range(len(target), -1, -1):
        found = crate.modules.get(tuple(target[:k]))
        if found is not None:
            if mention.pub_use:
                own = crate.file_module[file]
                if tuple(target[:k])[: len(own)] == own and k > len(own):
                    return None  # a parent re-exporting its descendants
            return found
    return None


def strongly_connected(graph: dict[Path, dict[Path, int]]) -> list[list[Path]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    on_stack: set[Path] = set()
    stack: list[Path] = []
    components: list[list[Path]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def shortest_path(graph: dict[Path, dict[Path, int]], members: set[Path], src: Path, dst: Path) -> list[Path]:
    previous = {src: src}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        if node == dst:
            break
        for nxt in sorted(graph.get(node, {})):
            if nxt in members and nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    path = [dst]
    while path[-1] != src:
        path.append(previous[path[-1]])
    return path[::-1]


def check_loops(ws: Workspace, crates: list[Crate], info: list[str]) -> list[Violation]:
    violations = []
    for crate in crates:
        graph: dict[Path, dict[Path, int]] = {f: {} for f in crate.file_module}
        for f in crate.file_module:
            for mention in ws.source(f).mentions:
                target = resolve(crate, f, mention)
                if target is not None and target != f:
                    edges = graph[f]
                    edges[target] = min(edges.get(target, mention.line), mention.line)
        for component in strongly_connected(graph):
            if len(component) < 2:
                continue
            members = set(component)
            info.append(
                f"{crate.label}: {len(component)} files in one loop: "
                + ", ".join(ws.rel(f) for f in component)
            )
            cycles = set()
            for u in component:
                for v in graph[u]:
                    if v in members:
                        cycle = [u] + shortest_path(graph, members, v, u)[:-1]
                        k = cycle.index(min(cycle, key=ws.rel))
                        cycles.add(tuple(cycle[k:] + cycle[:k]))
            for cycle in sorted(cycles, key=lambda c: (len(c), [ws.rel(f) for f in c])):
                hops = list(cycle) + [cycle[0]]
                lines = [graph[a][b] for a, b in zip(hops, hops[1:])]
                chain = " -> ".join(ws.rel(f) for f in hops)
                refs = ", ".join(f"{ws.rel(a)}:{line}" for a, line in zip(hops, lines))
                violations.append((ws.rel(cycle[0]), lines[0], f"import loop: {chain} (refs at {refs})"))
    return violations


def check_file_length(ws: Workspace) -> list[Violation]:
    violations = []
    for pkg in ws.packages:
        for f in ws.src_files(pkg):
            count = len(ws.source(f).lines)
            if count > MAX_FILE_LINES:
                violations.append((ws.rel(f), 1, f"file has {count} lines (max {MAX_FILE_LINES})"))
    return violations


def production_files(ws: Workspace) -> list[tuple[Package, Path]]:
    return [(pkg, f) for pkg in ws.packages for f in ws.src_files(pkg) if not ws.is_test_file(f)]


def check_fn_length(ws: Workspace) -> list[Violation]:
    violations = []
    for _, f in production_files(ws):
        toks = ws.source(f).prod
        for i, tok in enumerate(toks):
            if not (is_id(tok, "fn") and is_id(at(toks, i + 1))):
                continue
            j, depth = i + 2, 0
            while j < len(toks):
                t = toks[j]
                if t.kind == "p" and t.text in "([":
                    depth += 1
                elif t.kind == "p" and t.text in ")]":
                    depth -= 1
                elif depth == 0 and t.kind == "p" and t.text in ";{":
                    break
                j += 1
            if j >= len(toks) or toks[j].text != "{":
                continue  # a declaration without a body
            end = matching(toks, j, "{", "}")
            length = toks[end].line - tok.line + 1
            if length > MAX_FN_LINES:
                name = toks[i + 1].text
                violations.append(
                    (ws.rel(f), tok.line, f"function `{name}` has {length} lines (max {MAX_FN_LINES})")
                )
    return violations


def banned_family(name: str, banned: tuple[str, ...]) -> str | None:
    for base in banned:
        if name == base or name.startswith(base + "-"):
            return base
    return None


def manifest_line(manifest: Path, dep_key: str) -> int:
    """Line of `dep_key` in a `Cargo.toml` dependency table (1 when not found)."""
    table = ""
    key = re.compile(rf"^\s*[\"']?{re.escape(dep_key)}[\"']?\s*[.=]")
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        header = re.match(r"^\s*\[([^\]]+)\]", line)
        if header:
            table = header.group(1).strip()
            if table.endswith(f"dependencies.{dep_key}"):
                return number
            continue
        if table.endswith("dependencies") and not table.endswith("dev-dependencies") and key.match(line):
            return number
    return 1


def check_domain_deps(ws: Workspace, info: list[str]) -> list[Violation]:
    banned = {name: HTTP_FRAMEWORKS + PURE_CRATES.get(name, ()) for name in DOMAIN_CRATES}
    by_name = {pkg.name: pkg for pkg in ws.packages}
    for name in DOMAIN_CRATES:
        if name not in by_name:
            info.append(f"domain crate `{name}` is not a workspace member")
    meta = ws.cargo_metadata(resolved=True)
    if meta is not None and meta.get("resolve"):
        graph, names, dep_keys, roots = graph_from_metadata(meta)
        info.append("dependencies: resolved graph of `cargo metadata` (transitive)")
    else:
        graph, names, dep_keys, roots = graph_from_manifests(ws)
        info.append("dependencies: `Cargo.toml` files (direct, and through workspace crates)")
    violations = []
    for name, bans in banned.items():
        if name not in roots:
            continue
        start = roots[name]
        pure = PURE_CRATES.get(name, ())
        found = shortest_chains(graph, names, start, pure, stop_at=())
        http = shortest_chains(graph, names, start, HTTP_FRAMEWORKS, stop_at=HTTP_CLIENTS)
        found.update(http)
        for family, chain in sorted(shortest_chains(graph, names, start, HTTP_FRAMEWORKS, ()).items()):
            if family not in http:
                info.append(
                    f"exempt: {' -> '.join(names[n] for n in chain)} (inside an HTTP client)"
                )
        pkg = by_name[name]
        for family, chain in sorted(found.items()):
            first = chain[1]
            line = manifest_line(pkg.manifest, dep_keys.get((start, first), names[first]))
            how = "" if len(chain) == 2 else " (" + " -> ".join(names[n] for n in chain) + ")"
            what = "an HTTP framework" if family in HTTP_FRAMEWORKS else "I/O: it must stay pure"
            violations.append(
                (ws.rel(pkg.manifest), line, f"`{name}` depends on `{family}`, {what}{how}")
            )
    return violations


def shortest_chains(graph, names, start, bans: tuple[str, ...], stop_at: tuple[str, ...]) -> dict[str, list]:
    """For each banned family reachable from `start`, the shortest chain of packages to it.
    The dependencies of packages named in `stop_at` are not followed (unless direct)."""
    previous = {start: start}
    queue = deque([start])
    chains: dict[str, list] = {}
    while queue:
        node = queue.popleft()
        family = banned_family(names[node], bans) if node != start else None
        if family is not None and family not in chains:
            chain = [node]
            while chain[-1] != start:
                chain.append(previous[chain[-1]])
            chains[family] = chain[::-1]
        if node != start and names[node] in stop_at:
            continue
        for nxt in sorted(graph.get(node, ())):
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return chains


def graph_from_metadata(meta: dict):
    names = {pkg["id"]: pkg["name"] for pkg in meta["packages"]}
    members = set(meta["workspace_members"])
    keys = {  # how a workspace package's Cargo.toml spells each dependency (renames)
        pkg["id"]: {d["name"]: d.get("rename") or d["name"] for d in pkg["dependencies"]}
        for pkg in meta["packages"]
        if pkg["id"] in members
    }
    graph: dict[str, list[str]] = {}
    dep_keys: dict[tuple[str, str], str] = {}
    for node in meta["resolve"]["nodes"]:
        out = []
        for dep in node.get("deps", []):
            kinds = {k.get("kind") for k in dep.get("dep_kinds", [{"kind": None}])}
            if kinds & {None, "normal", "build"}:
                out.append(dep["pkg"])
                name = names[dep["pkg"]]
                dep_keys[(node["id"], dep["pkg"])] = keys.get(node["id"], {}).get(name, name)
        graph[node["id"]] = out
    roots = {names[i]: i for i in members}
    return graph, names, dep_keys, roots


def graph_from_manifests(ws: Workspace):
    """Direct dependencies of every workspace package, keyed by package name."""
    root_manifest = tomllib.loads((ws.root / "Cargo.toml").read_text())
    shared = root_manifest.get("workspace", {}).get("dependencies", {})
    members = {pkg.name for pkg in ws.packages}
    graph: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    dep_keys: dict[tuple[str, str], str] = {}
    for pkg in ws.packages:
        manifest = tomllib.loads(pkg.manifest.read_text())
        tables = [manifest.get("dependencies", {}), manifest.get("build-dependencies", {})]
        for target in manifest.get("target", {}).values():
            tables += [target.get("dependencies", {}), target.get("build-dependencies", {})]
        out = []
        for table in tables:
            for key, spec in table.items():
                real = key
                if isinstance(spec, dict):
                    if spec.get("workspace") and isinstance(shared.get(key), dict):
                        real = shared[key].get("package", key)
                    real = spec.get("package", real)
                node = real if real in members else f"registry:{real}"
                names[node] = real
                dep_keys[(pkg.name, node)] = key
                out.append(node)
        graph[pkg.name] = out
        names[pkg.name] = pkg.name
    return graph, names, dep_keys, {pkg.name: pkg.name for pkg in ws.packages}


def check_service_share(ws: Workspace, info: list[str]) -> list[Violation]:
    service = total = 0
    for pkg, f in production_files(ws):
        sf = ws.source(f)
        in_tests = set()
        for start, end in sf.test_ranges:
            in_tests.update(range(start, end + 1))
        count = sum(1 for n, line in enumerate(sf.lines, 1) if line.strip() and n not in in_tests)
        total += count
        if pkg.is_root:
            service += count
    share = service / total if total else 0.0
    figure = f"service crate: {service:,} of {total:,} production lines ({share:.1%})"
    info.append(figure)
    root_pkg = next((p for p in ws.packages if p.is_root), None)
    if root_pkg is None or share < MAX_SERVICE_SHARE:
        return []
    where = root_pkg.lib or (root_pkg.bins[0] if root_pkg.bins else root_pkg.manifest)
    return [(ws.rel(where), 1, f"{figure}: the service crate must hold less than {MAX_SERVICE_SHARE:.0%}")]


def check_citations(ws: Workspace, script: Path) -> list[Violation]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ws.root, capture_output=True, check=True, timeout=120,
        ).stdout.decode("utf-8", errors="replace")
        files = sorted({p for p in out.split("\0") if p})
    except (OSError, subprocess.SubprocessError):
        skip = {".git", "target", "node_modules"}
        files = sorted(
            p.relative_to(ws.root).as_posix()
            for p in ws.root.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ws.root).parts)
        )
    own = ws.rel(script)
    violations = []
    for name in files:
        if not name.endswith(CITATION_SUFFIXES) or name == own or name.startswith(CITATION_EXEMPT_DIRS):
            continue
        path = ws.root / name
        if not path.is_file():
            continue  # deleted in the working tree
        text = path.read_text(encoding="utf-8", errors="replace")
        if not any(c in text for c in OUTSIDE_CITATIONS):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            cited = [c for c in OUTSIDE_CITATIONS if c in line]
            if cited:
                what = " and ".join(f"`{c}`" for c in cited)
                violations.append((name, number, f"cites a file outside the repository ({what})"))
    return violations


# --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet", action="store_true", help="print only violations and the summary")
    parser.add_argument("--root", type=Path, help="workspace root (default: the parent of scripts/)")
    args = parser.parse_args()
    script = Path(__file__).resolve()
    root = (args.root or script.parent.parent).resolve()
    if not (root / "Cargo.toml").is_file():
        print(f"check-layout: no Cargo.toml in {root}", file=sys.stderr)
        return 2

    notes: list[str] = []
    ws = Workspace(root, notes)
    crates = ws.crates()
    results: dict[str, tuple[list[Violation], list[str]]] = {}
    for key, _ in CHECKS:
        info: list[str] = []
        if key == "loops":
            found = check_loops(ws, crates, info)
        elif key == "file-length":
            found = check_file_length(ws)
        elif key == "fn-length":
            found = check_fn_length(ws)
        elif key == "domain-deps":
            found = check_domain_deps(ws, info)
        elif key == "service-share":
            found = check_service_share(ws, info)
        else:
            found = check_citations(ws, script)
        if key != "loops":  # loops are already in a meaningful order
            found = sorted(set(found))
        results[key] = (found, info)

    if not args.quiet:
        labels = ", ".join(c.label for c in crates)
        print(f"check-layout: {root} ({len(crates)} crates: {labels})")
        for note in dict.fromkeys(notes):
            print(f"note: {note}")
    for number, (key, title) in enumerate(CHECKS, 1):
        found, info = results[key]
        if not args.quiet:
            status = "ok" if not found else f"{len(found)} violation{'s' * (len(found) != 1)}"
            print(f"\n[{number}/{len(CHECKS)}] {title}: {status}")
            for line in info:
                if not line.startswith("service crate:"):
                    print(f"  {line}")
        for path, line, message in found:
            print(f"{path}:{line}: {message}")

    total = sum(len(found) for found, _ in results.values())
    share = next(line for line in results["service-share"][1] if line.startswith("service crate:"))
    counts = ", ".join(f"{key} {len(results[key][0])}" for key, _ in CHECKS)
    print()
    print(share)
    if total:
        print(f"check-layout: {total} violation{'s' * (total != 1)} ({counts})")
        return 1
    print("check-layout: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
