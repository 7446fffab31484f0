"""One root exception; each user-facing failure is a subclass that builds its own message.

Messages are one line: what went wrong, where (file, row, column), and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable


def _listing(values: Iterable[object], limit: int = 10) -> str:
    items = [str(v) for v in values]
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def first_line(exc: BaseException) -> str:
    """An exception's first line of text, or its type when it has none: errors stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class FeatctlError(Exception):
    """Root of every error featctl reports to a user."""


class SourceNotFoundError(FeatctlError):
    def __init__(self, path: str, option: str = "--source") -> None:
        super().__init__(f"file not found: {path} (check the path passed to {option})")


class SourceFormatError(FeatctlError):
    """The source cannot be read in the format asked for."""


class SourceEncodingError(FeatctlError):
    def __init__(self, path: str, line: int, encoding: str, detail: str, hint: str | None = None) -> None:
        hint = hint or "pass --encoding with the file's real encoding, e.g. --encoding latin-1"
        super().__init__(f"{path}: line {line} is not valid {encoding} ({detail}); {hint}")


class UnknownColumnError(FeatctlError):
    def __init__(self, column: str, where: str, available: Iterable[str]) -> None:
        super().__init__(
            f"unknown column '{column}' in {where}; available columns: {_listing(available, 50)}"
        )


class DuplicateIdError(FeatctlError):
    def __init__(self, source: str, ids: list[object]) -> None:
        super().__init__(
            f"{source}: {len(ids)} id(s) appear more than once with different content: "
            f"{_listing(ids)}; fix the source or pass --on-duplicate first|last"
        )


class TemplateError(FeatctlError):
    """A text template that cannot be parsed."""


class RecipeMismatchError(FeatctlError):
    def __init__(self, name: str, changes: dict[str, tuple[object, object]]) -> None:
        what = "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in changes.items())
        super().__init__(
            f"feature set '{name}' was built with a different recipe ({what}); "
            f"embed into a new set with --name, or pass --replace to rebuild '{name}'"
        )


class UnknownEncoderError(FeatctlError):
    def __init__(self, spec: str, known: Iterable[str]) -> None:
        super().__init__(
            f"unknown encoder '{spec}'; known prefixes: {_listing(sorted(known))} "
            f"(write it as PREFIX:MODEL, e.g. st:all-MiniLM-L6-v2)"
        )


class EncoderOptionError(FeatctlError):
    """An encoder option that is unknown or has a bad value."""


class EncoderLoadError(FeatctlError):
    """A model that cannot be loaded (missing package, no network, bad folder)."""


class EncoderFailedError(FeatctlError):
    def __init__(self, count: int, reason: str) -> None:
        super().__init__(
            f"the encoder failed on each of the first {count} texts it was given, each alone, with the same "
            f"error ({reason}); committed parts are kept: fix the encoder or its options and run again"
        )


class EncoderCallError(FeatctlError):
    """An encoder call that failed for a reason recorded per row (raised when there is no row)."""


class ApiRefusedError(FeatctlError):
    def __init__(self, status: int, message: str, hint: str) -> None:
        super().__init__(f"the embeddings API refused the request ({status}: {message}); {hint}")


class BatchApiError(FeatctlError):
    def __init__(self, what: str, error: str) -> None:
        super().__init__(f"could not {what} through the Batch API ({error}); submitted batches are kept in "
                         "the store: run the same command again to resume")


class PendingBatchesError(FeatctlError):
    def __init__(self, name: str, batches: int, texts: int) -> None:
        super().__init__(
            f"set '{name}' has {batches} batch(es) submitted with --batch-api and not collected yet ({texts} texts, "
            "already paid for); run the same command with --batch-api to collect them, or delete "
            f"batches/{name}/ in the store to give them up"
        )


class RayNotInstalledError(FeatctlError):
    def __init__(self, missing: str) -> None:
        super().__init__(f"--engine ray needs Ray Data, which is not installed ({missing}); "
                         "install it with pip install 'featctl[ray]', or use --engine local")


class RayEngineError(FeatctlError):
    """Ray could not be reached, or an encoder actor failed for a reason that is not one row's."""


class RayResourcesError(RayEngineError):
    def __init__(self, workers: int, gpus_per_worker: float, need: dict[str, float], have: dict[str, float]) -> None:
        short = ", ".join(f"{need[k]:g} {k} (it has {have.get(k, 0):g})" for k in need if need[k] > have.get(k, 0))
        fits = int(have.get("CPU", 0) // 1)
        if gpus_per_worker:
            fits = min(fits, int(have.get("GPU", 0) // gpus_per_worker))
        if fits >= 1:
            hint = f"pass --workers {fits} or fewer"
        elif gpus_per_worker and not have.get("GPU"):
            hint = "drop --gpus-per-worker (this cluster has no GPU)"
        else:
            hint = "lower --gpus-per-worker or add nodes"
        super().__init__(f"the Ray cluster cannot run {workers} encoder worker(s): they need {short}, and would "
                         f"wait for them forever; {hint}, or point --ray-address at a larger cluster")


class WorkerRecipeError(RayEngineError):
    def __init__(self, host: str, driver: dict[str, object], worker: dict[str, object]) -> None:
        keys = sorted(set(driver) | set(worker), key=str)
        what = "; ".join(f"{k}: {driver.get(k)!r} on the driver, {worker.get(k)!r} on the worker"
                         for k in keys if driver.get(k) != worker.get(k))
        super().__init__(f"an encoder worker on {host} built a different encoder than the driver ({what}); "
                         "nothing it would encode is stored: give every Ray node the same featctl, model "
                         "files and options, then run again")


class ApiKeyError(FeatctlError):
    """No API key, or an unreadable --api-key-file."""


class StoreError(FeatctlError):
    """A store that is missing, corrupt, or of an unknown format."""


class UnknownSetError(StoreError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        hint = f"sets in this store: {_listing(known)}" if known else "this store has no feature sets yet"
        super().__init__(f"no feature set named '{name}'; {hint} (see featctl ls)")


class LockTimeoutError(StoreError):
    def __init__(self, path: str, seconds: float, holder: str) -> None:
        super().__init__(
            f"store {path} is locked by another writer ({holder}) and was not released within "
            f"{seconds:g} s; wait for it to finish or raise --lock-timeout"
        )


class LockError(StoreError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot open the store's lock file {path}: {reason}; check the --store path")


class ConcurrentCommitError(StoreError):
    def __init__(self, path: str) -> None:
        super().__init__(f"{path} was changed by another writer since this one started; nothing was "
                         "overwritten: rerun the command")


class LeaseLostError(StoreError):
    def __init__(self, path: str) -> None:
        super().__init__(f"this writer lost its lease {path} (it stalled past the lease's expiry and another "
                         "writer took over); nothing more was committed: rerun the command")


class IdTypeError(FeatctlError):
    """Ids of a type that cannot be matched to the store's ids."""


class EmptyStoreError(StoreError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"store {path} has no feature sets yet; create one with featctl embed --source FILE "
            "(or point --store / FEATCTL_STORE at another store)"
        )


class CoverageTooLowError(FeatctlError):
    """A feature set covers less than a required threshold; raised by ``check_coverage``."""

    def __init__(self, name: str, what: str, covered: int, total: int, option: str, threshold: float,
                 others: int = 0) -> None:
        ratio = covered / total
        # enough decimals that the figure and the threshold never print alike
        digits = next((d for d in range(1, 6) if f"{ratio:.{d}%}" != f"{threshold:.{d}%}"), 6)
        more = f" (and {others} more figure(s) below a threshold)" if others else ""
        super().__init__(
            f"feature set '{name}' covers {ratio:.{digits}%} of the {what} ({covered:,} of {total:,}), below "
            f"the minimum {threshold:.{digits}%} ({option}){more}; embed the missing ids (featctl coverage "
            "--list-missing 20 shows them) or lower the threshold"
        )


class CoverageInputError(FeatctlError):
    """Coverage asked for something its inputs cannot measure."""


# neighbors
class NeighborsInputError(FeatctlError):
    """A neighbour query that cannot be answered as asked (options, vectors, dimensions)."""


class UnknownIdError(NeighborsInputError):
    def __init__(self, value: object, name: str, close: Iterable[object]) -> None:
        close = list(close)
        hint = f"close ids: {_listing(close)}" if close else "the set has no ids close to it"
        super().__init__(f"no id {value} in set '{name}'; {hint}")


class IndexRequiredError(FeatctlError):
    def __init__(self, name: str, rows: int, limit: int) -> None:
        super().__init__(
            f"set '{name}' has {rows:,} vectors, more than the {limit:,} searched exactly without an index; "
            f"build one first with featctl index {name}"
        )


class QueryEncoderError(FeatctlError):
    def __init__(self, name: str, encoder: str, reason: str) -> None:
        super().__init__(f"cannot encode --text for set '{name}' with its encoder '{encoder}': {reason}")


class IndexBuildError(FeatctlError):
    """An index that cannot be built as asked (bad kind or memory budget, nothing to index)."""


# train
class TrainInputError(FeatctlError):
    """Training inputs that cannot be used (columns, splits, features, options)."""


class FeatureEntityError(TrainInputError):
    def __init__(self, name: str, entity: str, wanted: str, option: str) -> None:
        super().__init__(
            f"feature set '{name}' holds {entity} vectors, but {option} needs {wanted} vectors; "
            f"pass a set embedded from the {wanted} table (featctl ls shows each set's entity)"
        )


class NanLossError(FeatctlError):
    def __init__(self, epoch: int, step: int, checkpoint: str | None) -> None:
        kept = f"the last good checkpoint is kept at {checkpoint}" if checkpoint else "no checkpoint was good yet"
        super().__init__(
            f"the loss became NaN at epoch {epoch}, step {step}; {kept}; lower --lr (or --reg), "
            "or check the features for extreme values (featctl coverage reports their norms)"
        )


# datasets
class DatasetError(FeatctlError):
    """A dataset that cannot be prepared: a missing folder or file, a malformed line, bad side data."""


class UnknownDatasetError(DatasetError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown dataset '{name}'; known datasets: {_listing(sorted(known))} "
                         "(see featctl datasets list)")


class DatasetLineError(DatasetError):
    def __init__(self, path: str, line: int, detail: str) -> None:
        super().__init__(f"{path}: line {line}: {detail}; fix or remove that line, or fetch a fresh copy "
                         "of the dataset (leave out --from to download it)")


class DatasetDownloadError(DatasetError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot download {url}: {reason}; check the network, pass --url with a mirror, "
                         "or pass --from with an unpacked copy")
