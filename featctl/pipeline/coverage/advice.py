"""One-line warnings drawn from a set's figures, most serious first, each saying what to do."""

from __future__ import annotations

from typing import Any


def set_warnings(s: dict[str, Any]) -> list[str]:
    out: list[str] = []
    missing, vectors, space = s["missing"], s["vectors"], s["id_space"]
    catalog, inter = s["catalog"], s["interactions"]
    if catalog and catalog["ratio"] is not None and catalog["covered"] < catalog["ids"]:
        out.append(f"{catalog['ids'] - catalog['covered']:,} of {catalog['ids']:,} catalogue ids have no vector "
                   f"({catalog['ratio']:.1%} covered){_reasons(catalog['missing'])}; a trainer would zero-fill them")
    if inter and inter["weighted_ratio"] is not None and inter["covered_rows"] < inter["rows"]:
        article = "an" if s["entity"] == "item" else "a"
        out.append(f"{inter['rows'] - inter['covered_rows']:,} of {inter['rows']:,} interactions involve "
                   f"{article} {s['entity']} without a vector ({inter['weighted_ratio']:.1%} weighted coverage)")
    for m in space["mismatches"]:
        written, stored = m["examples"][0] if m["examples"] else ("?", "?")
        out.append(f"{m['ids']:,} {m['source']} ids match a stored id only when re-spelled "
                   f"({m['kind']}: {written!r} vs stored {stored!r}); {m['fix']}")
    if vectors["nan_or_inf"]:
        out.append(f"{vectors['nan_or_inf']:,} vectors hold NaN or inf; a trainer would propagate them: "
                   "re-embed those ids (featctl embed --replace)")
    if vectors["zero_norm"]:
        out.append(f"{vectors['zero_norm']:,} vectors are all zeros: they carry no information and break cosine "
                   "similarity")
    if missing["stale"]:
        out.append(f"{missing['stale']:,} vectors are stale: the catalogue's content changed since they were "
                   "encoded; run featctl embed again to refresh them")
    identical = vectors["identical"]
    different = identical["groups"] - identical["same_content_groups"]
    if different:
        example = ", ".join(str(i) for i in identical["examples"][0]) if identical["examples"] else ""
        out.append(f"{different:,} groups of ids share one vector although their content differs (e.g. {example}): "
                   "a sign of truncation or a broken encoder")
    if space["max_id"] is not None and space["ids"] and space["max_id"] >= space["ids"]:
        out.append(f"the largest id is {space['max_id']:,} but there are {space['ids']:,} ids: an id map sized by "
                   f"counting ids crashes on it; size arrays max_id + 1 = {space['max_id'] + 1:,} or align through "
                   "the store (FeatureSet.vectors)")
    nic = space["not_in_catalog"]
    if nic and nic["ids"]:
        out.append(f"{nic['ids']:,} {s['entity']} ids in the interactions ({nic['rows']:,} interactions) are not in "
                   f"the catalogue, e.g. {', '.join(str(i) for i in nic['examples'][:3])}")
    seen = {k: v for k, v in space["forms"]["interactions"].items() if k != "empty"}
    if len(seen) > 1:
        out.append(f"{s['entity']} ids in the interactions mix spellings: "
                   + ", ".join(f"{v:,} {k}" for k, v in seen.items()))
    if inter and not inter["ids"]:
        out.append(f"the interactions hold no {s['entity']} ids in column {inter['column']}: an empty log, or an "
                   "empty column")
    if inter and inter["empty_ids"]:
        out.append(f"{inter['empty_ids']:,} interactions have an empty {inter['column']}")
    if catalog and catalog["duplicate_ids"]:
        out.append(f"{catalog['duplicate_ids']:,} ids appear more than once in the catalogue {catalog['path']}, e.g. "
                   + ", ".join(str(i) for i in catalog["duplicate_examples"][:3]))
    if catalog and catalog["empty_ids"]:
        out.append(f"{catalog['empty_ids']:,} catalogue rows have an empty id")
    return out


def _reasons(missing: dict[str, Any]) -> str:
    parts = [f"{missing['never_encoded']:,} never encoded"] if missing["never_encoded"] else []
    parts += [f"{n:,} failed: {reason}" for reason, n in missing["failed"].items()]
    return f": {', '.join(parts)}" if parts else ""
