"""The results layer works where PyTorch cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_results_layer_never_imports_torch(tmp_path):
    code = textwrap.dedent(f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError("torch is blocked in this test")

        sys.meta_path.insert(0, Block())
        import shrinkbench.results as r
        from shrinkbench.results import analysis, checks, files, frame, names, store
        with r.Store({str(tmp_path)!r}) as s:
            s.register("a", "prune", {{"data": {{"name": "mnist"}}, "seed": 0}})
            s.start("a"); s.finish("a", {{"post_test_acc1": 0.5}})
        df = r.load({str(tmp_path)!r})
        assert df["post_test_top1_pct"].tolist() == [50.0], df
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
