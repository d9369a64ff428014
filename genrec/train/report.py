"""Human-readable result tables (the machine-readable contract is results.json)."""

from __future__ import annotations

MAIN = ("recall", "ndcg", "mrr")
BEYOND = ("coverage", "diversity", "novelty")


def protocol_line(protocol: dict) -> str:
  return (
    f"protocol: {protocol['dataset']} ({protocol['users']} users, {protocol['items']} items), "
    f"split={protocol['split']}, candidates={protocol['candidates']}, ties={protocol['ties'].split(' ')[0]}"
  )


def results_table(results: dict) -> str:
  ks = results["protocol"]["ks"]
  if results["protocol"].get("task") == "pointwise":
    return _pointwise_table(results)
  if not ks:
    return _stage_table(results)
  cols = [f"{m}@{k}" for k in ks for m in MAIN]
  lines = [f"{results['model']}:{results['preset']}  —  " + protocol_line(results["protocol"]), ""]
  lines.append("| split | " + " | ".join(cols) + " |")
  lines.append("|---" * (len(cols) + 1) + "|")
  for split in ("valid", "test"):
    m = results[split]
    lines.append(f"| {split} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in cols) + " |")
  k = max(ks)
  beyond = [f"{b}@{k}" for b in BEYOND if f"{b}@{k}" in results["test"]]
  if beyond:
    lines.append("")
    lines.append("test, beyond accuracy: " + ", ".join(f"{b}={results['test'][b]:.4f}" for b in beyond))
  for name, g in (results.get("groups", {}).get("test") or {}).items():
    metric = f"ndcg@{10 if 10 in ks else k}"
    if metric in g.get("disparity", {}):
      d = g["disparity"][metric]
      per = ", ".join(f"{v}={g['groups'][v][metric]:.3f} (n={g['groups'][v]['users']})" for v in g["groups"])
      lines.append(f"test {metric} by {name}: {per}; max-min={d['max_minus_min']:.4f}, worst={d['worst']}")
  return "\n".join(lines + _run_lines(results))


def _stage_table(results: dict) -> str:
  """Models without ranking metrics (tokenizers): their own validation statistics."""
  p = results["protocol"]
  lines = [f"{results['model']}:{results['preset']}  —  {p['dataset']} catalogue of {p['items']} items", ""]
  m = results["valid"]
  keys = [k for k in sorted(m) if "/" not in k]
  lines.append("| " + " | ".join(keys) + " |")
  lines.append("|---" * len(keys) + "|")
  lines.append("| " + " | ".join(f"{m[k]:.4g}" for k in keys) + " |")
  sid = results.get("semantic_ids")
  if sid:
    st = sid["stats"]
    lines.append("")
    lines.append(
      f"semantic IDs: {sid['items']} items x {sid['digits']} digits (version {sid['version']}); "
      f"collision rate before the extra digit {st['collision_rate']:.4f}, "
      f"codebook usage per level {', '.join(f'{u:.2f}' for u in st['usage'])}"
    )
  return "\n".join(lines)


def _pointwise_table(results: dict) -> str:
  """Click-through models: AUC, UAUC (with the users it averages over) and logloss per split; HR@1 over the
  sampled candidates (with the examples ranked) when the protocol ranks."""
  p = results["protocol"]
  ranks = "hr@1" in results["test"]
  lines = [
    f"{results['model']}:{results['preset']}  —  protocol: {p['dataset']} ({p['users']} users, "
    f"{p['items']} items), split={p['split']}, label={p['label']}"
    + (f", candidates={p['candidates']} (HR@1: the target vs unseen negatives)" if ranks else ""),
    "",
  ]
  lines.append("| split | examples | AUC | UAUC | UAUC users | logloss |" + (" HR@1 | ranked |" if ranks else ""))
  lines.append("|---" * (8 if ranks else 6) + "|")
  for split in ("valid", "test"):
    m = results[split]
    lines.append(
      f"| {split} | {p['examples'][split]} | {m['auc']:.4f} | {m['uauc']:.4f} | {m['uauc_users']} | "
      f"{m['logloss']:.4f} |" + (f" {m['hr@1']:.4f} | {m['ranked']} |" if ranks else "")
    )
  cf = results.get("cf_artifact")
  if cf:
    lines.append("")
    lines.append(f"CF embeddings: {cf['path']} ({cf['num_users']} users, {cf['num_items']} items, dim {cf['dim']})")
  return "\n".join(lines + _run_lines(results))


def _run_lines(results: dict) -> list[str]:
  if results.get("train_seconds") is None:
    return []
  return [
    "",
    f"steps={results.get('steps')} best_step={results.get('best_step')} train_seconds={results['train_seconds']}",
  ]
