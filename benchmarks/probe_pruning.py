"""Probe (not a pipeline stage): ROSITA pruning of teacher_3, sizes and encode speed side by side.

Run after `dvc repro` from the repository root: `python benchmarks/probe_pruning.py`."""
import time, numpy as np, torch
from tinynewsrec.models.plmnr import PLMNR, NewsTokens, collate_train
from tinynewsrec.models.pruned import taylor_importance, pruned_student, count_parameters
from tinynewsrec.train.common import read_samples
from tinynewsrec.data import schemas
torch.manual_seed(0)
tokens = schemas.read_tokens("data/tokens/news.parquet")
samples = read_samples("data/samples/train.parquet")
nt = NewsTokens(tokens, "title_ids", max_len=32)
teacher = PLMNR.from_pretrained("models/teacher_3", trainable_layers=0).eval()
rows = np.random.default_rng(0).permutation(samples.num_rows)
batches = [collate_train(samples.take(rows[i*32:(i+1)*32]), nt) for i in range(8)]
t0 = time.perf_counter(); scores = taylor_importance(teacher, batches); t_imp = time.perf_counter() - t0
pruned = pruned_student(teacher, scores, keep_heads=2, ffn_dim=384, num_layers=2, embedding_rank=64).eval()
student = PLMNR.from_pretrained("models/student", trainable_layers=0).eval()
news = nt.batch(np.arange(1, 257))
def speed(m):
    with torch.no_grad():
        m.news_encoder(news)
        ts = []
        for _ in range(3):
            t = time.perf_counter(); m.news_encoder(news); ts.append(time.perf_counter() - t)
    return 256 / min(ts)
print(f"importance over 8 batches of 32 samples: {t_imp:.1f} s")
for name, m in [("teacher_3 (6 layers)", teacher), ("Tiny-NewsRec-2 student", student), ("pruned 2L/2 heads/FFN 384/rank 64", pruned)]:
    print(f"{name}: {count_parameters(m.plm):,} PLM params, {speed(m):,.0f} news/s (256 titles, batch 256, best of 3)")
