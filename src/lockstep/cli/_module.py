"""`lockstep module keygen | manifest | sign | verify | inspect`: keys and agent modules.

Works on files only; registering a module with a running orchestrator is another command.
Exit codes: 0 ok, 1 the module was refused (verify) or is unreadable, 2 bad usage or
configuration (missing file, bad key, bad option value).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lockstep import wasmbin
from lockstep.cli._app import app
from lockstep.cli._context import StateDirOption, fail, state_dir
from lockstep.errors import ConfigError, LockstepError, ModuleError
from lockstep.modules import (
    ABI_IMPORTS,
    ABI_VERSION,
    DEFAULT_CAPABILITIES,
    DEFAULT_MAX_MODULE_SIZE,
    MANIFEST_SECTION,
    SIGNATURE_SECTION,
    Manifest,
    Policy,
    check_abi,
    check_capabilities,
    embed_manifest,
    key_id,
    keygen,
    load_private_key,
    load_trusted_keys,
    module_hash,
    read_manifest,
    read_signature,
    sign,
    verify,
    verify_signature,
)

__all__ = ["default_keys_dir", "default_trusted_keys_dir", "module_app"]

module_app = typer.Typer(
    name="module",
    help="Create signing keys; embed manifests; sign, verify and inspect agent modules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(module_app, name="module")

TRUSTED_KEYS_ENV = "LOCKSTEP_TRUSTED_KEYS"


def default_keys_dir(state_dir_opt: Path | None = None) -> Path:
    """Where `keygen` writes by default: ``<state dir>/keys/signing``, where the local
    deployment (`lockstep up`) keeps its own signing key."""
    return state_dir(state_dir_opt) / "keys" / "signing"


def default_trusted_keys_dir(state_dir_opt: Path | None = None) -> Path:
    """$LOCKSTEP_TRUSTED_KEYS, else ``<state dir>/keys/trusted``: the directory the local
    deployment's orchestrator trusts (it re-reads it on every registration)."""
    env = os.environ.get(TRUSTED_KEYS_ENV)
    return Path(env) if env else state_dir(state_dir_opt) / "keys" / "trusted"


# --------------------------------------------------------------------------- helpers

ModuleArg = Annotated[Path, typer.Argument(help="the .wasm module", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
TrustedKeysOption = Annotated[
    Path | None,
    typer.Option(
        "--trusted-keys",
        help=f"directory of trusted *.pub keys (default: ${TRUSTED_KEYS_ENV}, "
        "else <state dir>/keys/trusted)",
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="where to write the result (default: in place)"),
]
ManifestFileOption = Annotated[
    Path | None,
    typer.Option("--manifest", "-m", help="manifest fields from a .toml or .json file"),
]
NameOption = Annotated[str | None, typer.Option("--name", help="manifest name")]
VersionOption = Annotated[str | None, typer.Option("--version", help="manifest version")]
AbiOption = Annotated[
    str | None, typer.Option("--abi-version", help=f"ABI version (default: {ABI_VERSION})")
]
CapabilityOption = Annotated[
    list[str] | None,
    typer.Option(
        "--capability",
        "-c",
        help="capability (repeatable; replaces the list): send, log, random, tick, "
        "infer:<model>, infer:*",
    ),
]
AutoCapOption = Annotated[
    bool,
    typer.Option(
        "--auto-capabilities",
        help="add send/log/random/tick for each of them the module imports "
        "(infer needs an explicit -c infer:<model>)",
    ),
]
LimitOption = Annotated[
    list[str] | None,
    typer.Option("--limit", "-l", help="requested limit NAME=VALUE (repeatable; replaces the set)"),
]


def _read_module(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read module {path}: {exc.strerror or exc}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    # Write next to the target and rename, so a crash never leaves a half-written module.
    directory = path.parent if str(path.parent) else Path(".")
    try:
        # mkstemp creates 0600; keep the mode of the file being replaced (0644 if new).
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def _parse_pairs(items: list[str], what: str) -> dict[str, int]:
    result: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = int(value.replace("_", ""))
        except ValueError:
            number = -1
        if not sep or not name or number <= 0:
            raise ConfigError(f"bad {what} {item!r}: expected NAME=POSITIVE_INTEGER")
        result[name.strip()] = number
    return result


def _load_manifest_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read manifest file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        is_json = path.suffix.lower() == ".json" or (
            path.suffix.lower() != ".toml" and text.lstrip().startswith("{")
        )
        data: object = json.loads(text) if is_json else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:  # incl. UnicodeDecodeError
        raise ConfigError(f"manifest file {path} is not valid JSON/TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"manifest file {path} must hold a table/object of manifest fields")
    return data


def _build_manifest(
    wasm: bytes,
    manifest_file: Path | None,
    name: str | None,
    version: str | None,
    abi_version: str | None,
    capabilities: list[str] | None,
    limits: list[str] | None,
    auto_capabilities: bool,
) -> Manifest:
    """Existing manifest, overlaid by the file's fields, overlaid by the options."""
    existing = read_manifest(wasm)
    fields: dict[str, Any] = existing.to_dict() if existing is not None else {}
    fields.setdefault("abi_version", ABI_VERSION)
    if manifest_file is not None:
        fields.update(_load_manifest_file(manifest_file))
    if name is not None:
        fields["name"] = name
    if version is not None:
        fields["version"] = version
    if abi_version is not None:
        fields["abi_version"] = abi_version
    if capabilities:
        # dict.fromkeys: de-duplicate while keeping a deterministic order
        fields["capabilities"] = list(dict.fromkeys(capabilities))
    if limits:
        fields["limits"] = _parse_pairs(limits, "--limit")
    if auto_capabilities:
        caps = list(fields.get("capabilities") or [])
        for imp in wasmbin.parse_imports(wasm):
            if imp.module == "lockstep_v1" and imp.name in DEFAULT_CAPABILITIES:
                caps.append(imp.name)
        fields["capabilities"] = list(dict.fromkeys(caps))
    for required, flag in (("name", "--name"), ("version", "--version")):
        if required not in fields:
            raise ConfigError(
                f"the manifest needs a {required}: pass {flag} or a --manifest file with it"
            )
    return Manifest.from_dict(fields)


def _prepare(
    module: Path,
    manifest_file: Path | None,
    name: str | None,
    version: str | None,
    abi_version: str | None,
    capabilities: list[str] | None,
    limits: list[str] | None,
    auto_capabilities: bool,
) -> tuple[bytes, Manifest]:
    wasm = _read_module(module)
    manifest = _build_manifest(
        wasm, manifest_file, name, version, abi_version, capabilities, limits, auto_capabilities
    )
    embedded = embed_manifest(wasm, manifest)
    # Policy-independent checks now, so nobody signs a module that can never register.
    parsed = wasmbin.parse_module(embedded)
    check_abi(parsed, exports=False)
    check_capabilities(parsed, manifest)
    return embedded, manifest


# --------------------------------------------------------------------------- commands


@module_app.command("keygen")
def keygen_cmd(
    directory: Annotated[
        Path | None,
        typer.Argument(help="directory for the key pair (default: <state dir>/keys/signing)"),
    ] = None,
    trust: Annotated[
        bool,
        typer.Option("--trust", help="also copy the public key into the trusted keys directory"),
    ] = False,
    trusted_keys: TrustedKeysOption = None,
    state_dir_opt: StateDirOption = None,
) -> None:
    """Create an Ed25519 key pair: <id>.key (private, mode 0600) and <id>.pub."""
    target = directory if directory is not None else default_keys_dir(state_dir_opt)
    try:
        kid = keygen(target)
        typer.echo(f"key id      {kid}")
        typer.echo(f"private key {target / (kid + '.key')}  (keep it secret)")
        typer.echo(f"public key  {target / (kid + '.pub')}")
        if trust:
            trusted = trusted_keys or default_trusted_keys_dir(state_dir_opt)
            try:
                trusted.mkdir(parents=True, exist_ok=True)
                (trusted / f"{kid}.pub").write_bytes((target / f"{kid}.pub").read_bytes())
            except OSError as exc:
                raise ConfigError(f"cannot write to {trusted}: {exc.strerror or exc}") from None
            typer.echo(f"trusted in  {trusted}")
    except LockstepError as exc:
        raise fail(exc) from None


@module_app.command("manifest")
def manifest_cmd(
    module: ModuleArg,
    manifest_file: ManifestFileOption = None,
    name: NameOption = None,
    version: VersionOption = None,
    abi_version: AbiOption = None,
    capability: CapabilityOption = None,
    limit: LimitOption = None,
    auto_capabilities: AutoCapOption = False,
    output: OutputOption = None,
) -> None:
    """Embed or update the manifest without signing (drops any old signature)."""
    try:
        data, manifest = _prepare(
            module,
            manifest_file,
            name,
            version,
            abi_version,
            capability,
            limit,
            auto_capabilities,
        )
        out = output or module
        _write_atomic(out, data)
    except ModuleError as exc:
        raise fail(exc, 1) from None
    except LockstepError as exc:
        raise fail(exc) from None
    typer.echo(f"manifest {manifest.to_json().decode()} -> {out} (unsigned)")


@module_app.command("sign")
def sign_cmd(
    module: ModuleArg,
    key: Annotated[Path, typer.Option("--key", "-k", help="private key file (<id>.key)")],
    manifest_file: ManifestFileOption = None,
    name: NameOption = None,
    version: VersionOption = None,
    abi_version: AbiOption = None,
    capability: CapabilityOption = None,
    limit: LimitOption = None,
    auto_capabilities: AutoCapOption = False,
    output: OutputOption = None,
) -> None:
    """Add or update the manifest (from options and/or a file) and sign the module.

    Fields not given keep the value of the manifest already in the module.
    """
    try:
        private = load_private_key(key)
        data, manifest = _prepare(
            module,
            manifest_file,
            name,
            version,
            abi_version,
            capability,
            limit,
            auto_capabilities,
        )
        signed = sign(data, private)
        out = output or module
        _write_atomic(out, signed)
    except ModuleError as exc:
        raise fail(exc, 1) from None
    except LockstepError as exc:
        raise fail(exc) from None
    typer.echo(
        f"signed {manifest.name}@{manifest.version} {module_hash(signed)} "
        f"key {key_id(private)} -> {out}"
    )


@module_app.command("verify")
def verify_cmd(
    module: ModuleArg,
    trusted_keys: TrustedKeysOption = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            help="capability the policy grants (repeatable; replaces the default "
            f"{', '.join(sorted(DEFAULT_CAPABILITIES))})",
        ),
    ] = None,
    dev_mode: Annotated[
        bool, typer.Option("--dev-mode", help="accept unsigned modules (development only)")
    ] = False,
    max_size: Annotated[
        int, typer.Option("--max-size", min=1, help="largest module accepted, bytes")
    ] = DEFAULT_MAX_MODULE_SIZE,
    max_limit: Annotated[
        list[str] | None,
        typer.Option("--max-limit", help="policy bound NAME=VALUE on a requested limit"),
    ] = None,
    as_json: JsonOption = False,
    state_dir_opt: StateDirOption = None,
) -> None:
    """Verify a module as registration would; exit 1 with the reason if it is refused."""
    try:
        directory = trusted_keys or default_trusted_keys_dir(state_dir_opt)
        keys = load_trusted_keys(directory)
        policy = Policy(
            allowed_capabilities=frozenset(allow) if allow else DEFAULT_CAPABILITIES,
            trusted_keys_dir=directory,
            max_module_size=max_size,
            dev_mode=dev_mode,
            max_limits=_parse_pairs(max_limit or [], "--max-limit"),
        )
        wasm = _read_module(module)
    except LockstepError as exc:
        raise fail(exc) from None
    try:
        verdict = verify(wasm, keys, policy)
    except ModuleError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": type(exc).__name__, "reason": str(exc)}))
            raise typer.Exit(1) from None
        raise fail(f"refused: {exc}", 1) from None
    if as_json:
        typer.echo(json.dumps({"ok": True, **verdict.to_dict()}, sort_keys=True))
        return
    for warning in verdict.warnings:
        typer.secho(f"WARNING: {warning}", fg=typer.colors.YELLOW, bold=True, err=True)
    m = verdict.manifest
    signer = f"signer {verdict.signer}" if verdict.signer else "unsigned"
    typer.echo(f"{verdict.verdict} {m.name}@{m.version} {verdict.module_hash} {signer}")


@module_app.command("inspect")
def inspect_cmd(
    module: ModuleArg,
    trusted_keys: Annotated[
        Path | None,
        typer.Option("--trusted-keys", help="also check the signature against these keys"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a module's manifest, signer, hash, imports and exports (no policy applied)."""
    try:
        wasm = _read_module(module)
        keys = load_trusted_keys(trusted_keys) if trusted_keys is not None else None
    except LockstepError as exc:
        raise fail(exc) from None
    try:
        report = _inspect(module, wasm, keys)
    except ModuleError as exc:
        raise fail(exc, 1) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    _print_report(report)


def _inspect(path: Path, wasm: bytes, keys: Any) -> dict[str, Any]:
    parsed = wasmbin.parse_module(wasm)  # malformed modules stop here
    manifest: dict[str, Any] | None = None
    manifest_error = ""
    try:
        found = read_manifest(wasm)
        manifest = found.to_dict() if found is not None else None
    except ModuleError as exc:
        manifest_error = str(exc)
    signature: dict[str, Any] | None = None
    try:
        block = read_signature(wasm)
        if block is not None:
            status = "present, not checked (pass --trusted-keys)"
            if keys is not None:
                try:
                    verify_signature(wasm, keys)
                    status = "valid, key trusted"
                except ModuleError as exc:
                    status = f"INVALID: {exc}"
            signature = {"key_id": block.key_id, "status": status}
    except ModuleError as exc:
        signature = {"key_id": "", "status": f"INVALID: {exc}"}
    imports = []
    for imp in parsed.imports:
        try:
            sig = parsed.import_type(imp)
        except ModuleError:
            sig = None
        imports.append(
            {
                "module": imp.module,
                "name": imp.name,
                "kind": imp.kind.label,
                "type": str(sig) if sig is not None else imp.detail,
                "abi": imp.module == "lockstep_v1" and ABI_IMPORTS.get(imp.name) == sig,
            }
        )
    exports = []
    for exp in parsed.exports:
        try:
            etype = parsed.export_type(exp.name)
        except ModuleError:
            etype = None
        exports.append(
            {
                "name": exp.name,
                "kind": exp.kind.label,
                "index": exp.index,
                "type": str(etype) if etype is not None else "",
            }
        )
    return {
        "file": str(path),
        "size": len(wasm),
        "module_hash": module_hash(wasm),
        "manifest": manifest,
        "manifest_error": manifest_error,
        "signature": signature,
        "imports": imports,
        "exports": exports,
        "custom_sections": list(parsed.custom_section_names()),
    }


def _print_report(report: dict[str, Any]) -> None:
    console = Console()
    summary = Table(title=f"Module {report['file']}", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value", overflow="fold")
    summary.add_row("size", f"{report['size']} bytes")
    summary.add_row("module hash", report["module_hash"])
    manifest = report["manifest"]
    if manifest is not None:
        summary.add_row("name", manifest["name"])
        summary.add_row("version", manifest["version"])
        summary.add_row("abi version", manifest["abi_version"])
        summary.add_row("capabilities", ", ".join(manifest["capabilities"]) or "(none)")
        limits = manifest["limits"]
        summary.add_row(
            "limits", ", ".join(f"{k}={v}" for k, v in limits.items()) or "(runtime defaults)"
        )
    else:
        summary.add_row(
            "manifest", f"[red]{report['manifest_error'] or 'none (' + MANIFEST_SECTION + ')'}"
        )
    signature = report["signature"]
    if signature is None:
        summary.add_row("signer", f"[yellow]unsigned (no {SIGNATURE_SECTION} section)")
    else:
        summary.add_row("signer", signature["key_id"] or "?")
        style = "red" if signature["status"].startswith("INVALID") else "green"
        if signature["status"].startswith("present"):
            style = "yellow"
        summary.add_row("signature", f"[{style}]{signature['status']}")
    summary.add_row("custom sections", ", ".join(report["custom_sections"]) or "(none)")
    console.print(summary)

    imports = Table(title="Imports")
    for col in ("module", "name", "kind", "type"):
        imports.add_column(col)
    for imp in report["imports"]:
        mark = "" if imp["abi"] else "[red]"
        imports.add_row(f"{mark}{imp['module']}", imp["name"], imp["kind"], imp["type"])
    console.print(imports)

    exports = Table(title="Exports")
    for col in ("name", "kind", "type"):
        exports.add_column(col)
    for exp in report["exports"]:
        exports.add_row(exp["name"], exp["kind"], exp["type"])
    console.print(exports)
