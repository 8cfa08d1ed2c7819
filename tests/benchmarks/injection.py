"""The ingestion injection scan on attacks it was not written from. BIPIA's attack families are split by its
authors: the rules were written from the training families (15 text, 10 code) and are scored per family on the 25
held-out ones, each planted at the start, middle and end of a host document (text attacks in e-mails, code attacks in
Stack Overflow answers); false positives are counted on clean SQuAD paragraphs, e-mails and Stack Overflow answers.

Also measured: the code cue alone (held-out code attacks with their instruction sentence cut, only the code left),
and a candidate the scan does not use, each sentence's cosine similarity to the known (training) attacks, to show
what it would add and cost. Writes the `injection` section of bench-results.json / bench-results-injection.md."""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tests.benchmarks.run import ROOT, shared_file, shared_squad, write_results

DATA = ROOT / "data" / "safety"
POSITIONS = ("start", "middle", "end")
BOUNDARY = re.compile(r"(?<=[.!?:])\s+|\n+")
FENCED = re.compile(r"(```.*?(?:```|\Z))", re.S)
SIMILARITY_THRESHOLDS = (0.6, 0.7, 0.8)


def plant(host: str, attack: str, position: str) -> str:
    """The attack as its own sentence at the start or end of the host, or at the sentence boundary nearest its
    middle (never inside a word, as a real planted instruction would sit)."""
    if position == "start":
        return f"{attack}\n{host}"
    if position == "end":
        return f"{host}\n{attack}"
    cuts = [m.end() for m in BOUNDARY.finditer(host)] or [len(host)]
    cut = min(cuts, key=lambda c: abs(c - len(host) / 2))
    return f"{host[:cut]}{attack}\n{host[cut:]}"


def planted(attacks: dict[str, list[str]], hosts: list[str]) -> list[tuple[str, str]]:
    """(family, document) for every attack x position, the hosts taken in turn."""
    return [(family, plant(hosts[(3 * i + j) % len(hosts)], attack, position))
            for family, texts in attacks.items() for i, attack in enumerate(texts)
            for j, position in enumerate(POSITIONS)]


def code_only(attacks: dict[str, list[str]]) -> dict[str, list[str]]:
    """Code attacks without their instruction sentence: what the code cue sees when the attacker says nothing."""
    return {family: ["\n".join(FENCED.findall(text)) for text in texts] for family, texts in attacks.items()}


def load_sets(shared: bool = True) -> dict[str, Any]:
    """Training and held-out attacks, and the clean sets (full SQuAD dev and all 50 BIPIA e-mails when the shared
    data folder is present and asked for, the project's slices otherwise)."""
    sample = json.loads((DATA / "bipia_sample.json").read_text(encoding="utf-8"))
    bipia = DATA / "bipia"
    read = lambda name: json.loads((bipia / name).read_text(encoding="utf-8"))  # noqa: E731
    code_hosts = ["\n".join(json.loads(line)["context"])
                  for line in (bipia / "code_test.jsonl").read_text(encoding="utf-8").splitlines()]
    squad = shared_squad() if shared else None
    shared_emails = shared_file("bipia/email/train.jsonl") if shared else None
    emails = ([json.loads(line)["context"] for line in shared_emails.read_text(encoding="utf-8").splitlines()]
              if shared_emails else [e["context"] for e in sample["email"]])
    if squad is not None:
        from reasonloop.retrieval.squad import load_squad, passage_records

        paragraphs = [r["text"] for r in passage_records(load_squad(squad))]
    else:
        if shared:
            print("SQuAD not found in the shared data folder: clean paragraphs are the 48 of data/corpus")  # noqa: T201
        paragraphs = [json.loads(line)["text"] for line in
                      (ROOT / "data" / "corpus" / "squad_sample.jsonl").read_text(encoding="utf-8").splitlines()]
    return {"train": {"text": sample["text_attacks"], "code": read("code_attack_train.json")},
            "held_out": {"text": read("text_attack_test.json"), "code": read("code_attack_test.json")},
            "hosts": {"text": emails, "code": code_hosts},
            "clean": {"squad_paragraphs": paragraphs, "emails": emails, "code_answers": code_hosts}}


def recall_by_family(docs: list[tuple[str, str]], flagged: list[bool]) -> dict[str, float]:
    families = sorted({f for f, _ in docs})
    return {f: round(sum(hit for (g, _), hit in zip(docs, flagged, strict=True) if g == f)
                     / sum(g == f for g, _ in docs), 3) for f in families}


def rules_section(sets: dict[str, Any]) -> dict[str, Any]:
    from reasonloop.retrieval.injection import detect_injection

    out: dict[str, Any] = {"attacks": {}, "clean": {}}
    for split in ("train", "held_out"):
        for kind in ("text", "code"):
            docs = planted(sets[split][kind], sets["hosts"][kind])
            flags = [detect_injection(d) for _, d in docs]
            by_family = recall_by_family(docs, [bool(f) for f in flags])
            out["attacks"][f"{split}.{kind}"] = {
                "n": len(docs), "recall": round(sum(bool(f) for f in flags) / len(docs), 3),
                "by_family": by_family, "rules": dict(Counter(r for f in flags for r in f).most_common())}
    docs = planted(code_only(sets["held_out"]["code"]), sets["hosts"]["code"])
    flags = [bool(detect_injection(d)) for _, d in docs]
    out["attacks"]["held_out.code_without_instruction"] = {
        "n": len(docs), "recall": round(sum(flags) / len(docs), 3), "by_family": recall_by_family(docs, flags)}
    for name, texts in sets["clean"].items():
        flags = [detect_injection(t) for t in texts]
        out["clean"][name] = {"n": len(texts), "flagged": sum(bool(f) for f in flags),
                              "fp_rate": round(sum(bool(f) for f in flags) / len(texts), 4),
                              "rules": dict(Counter(r for f in flags for r in f).most_common())}
    return out


def sentences(text: str) -> list[str]:
    prose = FENCED.sub("\n", text)
    return [s.strip() for s in BOUNDARY.split(prose) if len(s.strip()) >= 12]


def similarity_section(sets: dict[str, Any]) -> dict[str, Any]:
    """Max cosine between a document's sentences and the training attacks' sentences: recall on the held-out
    attacks alone and together with the rules, and false positives per clean set, at a few thresholds."""
    import numpy as np

    from reasonloop.retrieval.config import EmbeddingConfig
    from reasonloop.retrieval.embeddings import load_embedder
    from reasonloop.retrieval.injection import detect_injection

    embedder = load_embedder(EmbeddingConfig())
    known = sorted({s for kind in ("text", "code") for texts in sets["train"][kind].values()
                    for t in texts for s in sentences(t)})
    known_vectors = embedder.embed_uncached(known)
    groups = {f"held_out.{k}": planted(sets["held_out"][k], sets["hosts"][k]) for k in ("text", "code")}
    groups |= {name: [("clean", t) for t in texts] for name, texts in sets["clean"].items()}
    unique = sorted({s for docs in groups.values() for _, d in docs for s in sentences(d)})
    row = {s: i for i, s in enumerate(unique)}
    best = (embedder.embed_uncached(unique) @ known_vectors.T).max(axis=1)
    scores = {name: np.array([max((best[row[s]] for s in sentences(d)), default=0.0) for _, d in docs])
              for name, docs in groups.items()}
    rules = {name: np.array([bool(detect_injection(d)) for _, d in docs]) for name, docs in groups.items()}
    out: dict[str, Any] = {"known_sentences": len(known)}
    for t in SIMILARITY_THRESHOLDS:
        out[str(t)] = {name: {"alone": round(float((s >= t).mean()), 3),
                              "with_rules": round(float(((s >= t) | rules[name]).mean()), 3)}
                       for name, s in scores.items()}
    return out


def table(section: dict[str, Any]) -> list[str]:
    lines = ["## Injection scan: recall per attack family, false positives per clean set", "",
             "| attacks | n | recall | families under 1.0 |", "|---|---|---|---|"]
    for name, row in section["rules"]["attacks"].items():
        weak = ", ".join(f"{f} {r:.2f}" for f, r in row["by_family"].items() if r < 1) or "-"
        lines.append(f"| {name} | {row['n']} | {row['recall']:.3f} | {weak} |")
    lines += ["", "| clean set | n | flagged | rate | rules |", "|---|---|---|---|---|"]
    for name, row in section["rules"]["clean"].items():
        rules = ", ".join(f"{r} {n}" for r, n in row["rules"].items()) or "-"
        lines.append(f"| {name} | {row['n']} | {row['flagged']} | {row['fp_rate']:.2%} | {rules} |")
    if "similarity" in section:
        names = [n for n in section["similarity"][str(SIMILARITY_THRESHOLDS[0])]]
        lines += ["", "Candidate not used: sentence similarity to the training attacks (alone / with the rules)", "",
                  "| threshold | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for t in SIMILARITY_THRESHOLDS:
            cells = section["similarity"][str(t)]
            lines.append(f"| {t} | " + " | ".join(f"{cells[n]['alone']:.3f} / {cells[n]['with_rules']:.3f}"
                                                 for n in names) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-similarity", action="store_true", help="skip the embedding candidate (~1 min)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()
    sets = load_sets()
    section: dict[str, Any] = {"rules": rules_section(sets)}
    if not args.no_similarity:
        section["similarity"] = similarity_section(sets)
    write_results(args.out, {"injection": section}, table(section), part="injection")


if __name__ == "__main__":
    main()
