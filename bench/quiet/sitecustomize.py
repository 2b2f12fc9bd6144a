# Benchmark harness on the GPU host's CPUs: emulate a 2-core machine. The process is pinned to two CPUs by
# taskset; ONNX Runtime sizes its default thread pool from the host's 16 cores, not the affinity, so sessions
# whose options leave intra_op_num_threads at 0 (ORT's "pick for me") get WB_EMULATED_CORES threads instead.
import os

_n = int(os.environ.get("WB_EMULATED_CORES", "0") or 0)
if _n:
    import onnxruntime as _ort

    _orig = _ort.InferenceSession.__init__

    def _init(self, path_or_bytes, sess_options=None, *a, **k):
        if sess_options is None:
            sess_options = _ort.SessionOptions()
        if sess_options.intra_op_num_threads == 0:
            sess_options.intra_op_num_threads = _n
        _orig(self, path_or_bytes, sess_options, *a, **k)

    _ort.InferenceSession.__init__ = _init
    os.cpu_count = lambda: _n
