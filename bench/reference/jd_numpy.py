"""NumPy reference for bench/jd.ts: the SAME algorithms as worker/compress (JD-Full alternating
with shifted subspace steps and CholQR2, JD-Diag ALS with rescaling), float32, on the same
adapters read from a safetensors file (B.{i} [m, r0], A.{i} [r0, k], scaling [n]).

  jd_numpy.py FILE METHOD RANK ITERATIONS   one timed run after a 1-iteration warm-up (as ours
                                            gets), one JSON line {"seconds", "objective",
                                            "meanError", "blas"}
  jd_numpy.py --serve                       the same for each JSON request {"file", "method",
                                            "rank", "iterations", "warmups"} on stdin (warmups:
                                            untimed runs before the first timed one of a
                                            setting), one reply line each,
                                            so runs can alternate with ours without a process
                                            start (and NumPy import) per run

Times include packing and normalizing, not file reading. Threads: OPENBLAS_NUM_THREADS etc. as
the caller sets them."""
import json
import struct
import sys
import time

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=np.float32).reshape(info["shape"])
    return out


def pack(t):
    n = t["scaling"].shape[0]
    r0 = max(t[f"A.{i}"].shape[0] for i in range(n))
    m, k = t["B.0"].shape[0], t["A.0"].shape[1]
    F = np.zeros((n * r0, m), np.float32)
    G = np.zeros((n * r0, k), np.float32)
    for i in range(n):
        a, b = t[f"A.{i}"], t[f"B.{i}"]
        F[i * r0 : i * r0 + a.shape[0]] = b.T
        G[i * r0 : i * r0 + a.shape[0]] = a
    # Normalize each adapter to ‖B A‖_F = 1 through its R0×R0 Grams.
    F3, G3 = F.reshape(n, r0, m), G.reshape(n, r0, k)
    norms = np.sqrt(np.maximum(np.einsum("nab,nab->n", F3 @ F3.transpose(0, 2, 1), G3 @ G3.transpose(0, 2, 1)), 0))
    c = (1 / np.sqrt(np.where(norms > 0, norms, 1))).astype(np.float32)
    F = (F3 * c[:, None, None]).reshape(n * r0, m)
    G = (G3 * c[:, None, None]).reshape(n * r0, k)
    return F, G, n, r0


def cholqr(Z):
    R = np.linalg.cholesky((Z.T @ Z).astype(np.float64)).T
    return (Z @ np.linalg.inv(R).astype(np.float32)).astype(np.float32)


def jd_full(F, G, n, r0, r, iterations, inner=2, seed=0):
    rng = np.random.default_rng(seed)
    U = cholqr(cholqr(rng.standard_normal((F.shape[1], r)).astype(np.float32)))
    V = cholqr(cholqr(rng.standard_normal((G.shape[1], r)).astype(np.float32)))
    energy = n / 2

    def half(X, Y, B, O):
        nonlocal energy
        Z = B
        for s in range(inner):
            W = (X @ Z).reshape(n, r0, r)
            P = (Y @ O).reshape(n, r0, r)
            Ct = P.transpose(0, 2, 1) @ W
            if s == 0:
                energy = float(np.sum(Ct * Ct))
            mu = np.float32(1e-2 * energy / r)
            Z = cholqr(X.T @ (P @ Ct).reshape(n * r0, r) + mu * Z)
        return cholqr(Z)

    for _ in range(iterations):
        U = half(F, G, U, V)
        V = half(G, F, V, U)
    W, P = F @ U, G @ V
    Fp = (F - W @ U.T).reshape(n, r0, -1)
    Gp = (G - P @ V.T).reshape(n, r0, -1)
    G3, W3 = G.reshape(n, r0, -1), W.reshape(n, r0, r)
    t1 = np.einsum("nab,nab->n", Fp @ Fp.transpose(0, 2, 1), G3 @ G3.transpose(0, 2, 1))
    t2 = np.einsum("nab,nab->n", W3 @ W3.transpose(0, 2, 1), Gp @ Gp.transpose(0, 2, 1))
    err2 = np.maximum(t1 + t2, 0)
    return float(err2.sum()), float(np.sqrt(err2).mean())


def jd_diag(F, G, n, r0, r, iterations, seed=0):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((F.shape[1], r)).astype(np.float32)
    V = rng.standard_normal((G.shape[1], r)).astype(np.float32)

    def solve_sigma(U, V):
        W, P = (F @ U).reshape(n, r0, r), (G @ V).reshape(n, r0, r)
        d = np.sum(W * P, axis=1).astype(np.float64)
        Gm = (U.T @ U).astype(np.float64) * (V.T @ V).astype(np.float64)
        return np.linalg.solve(Gm, d.T).T, d, Gm

    sigma, _, _ = solve_sigma(U, V)
    for _ in range(iterations):
        S = sigma.T @ sigma
        s32 = sigma.astype(np.float32)
        P = ((G @ V).reshape(n, r0, r) * s32[:, None, :]).reshape(n * r0, r)
        U = (F.T @ P) @ np.linalg.pinv((V.T @ V).astype(np.float64) * S).astype(np.float32)
        W = ((F @ U).reshape(n, r0, r) * s32[:, None, :]).reshape(n * r0, r)
        V = (G.T @ W) @ np.linalg.pinv((U.T @ U).astype(np.float64) * S).astype(np.float32)
        rho = np.sqrt(np.sum(sigma * sigma)) or 1.0
        sigma = sigma / rho
        c = np.sqrt(np.linalg.norm(V) / (rho * np.linalg.norm(U)))
        U, V = (U * np.float32(rho * c)).astype(np.float32), (V / np.float32(c)).astype(np.float32)
        sigma, _, _ = solve_sigma(U, V)
    sigma, d, Gm = solve_sigma(U, V)
    err2 = np.maximum(1 - np.einsum("na,na->n", sigma, d), 0)
    return float(err2.sum()), float(np.sqrt(err2).mean())


def blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def timed(tensors, method, rank, iterations):
    t0 = time.perf_counter()
    F, G, n, r0 = pack(tensors)
    if method == "jd-full":
        objective, mean_error = jd_full(F, G, n, r0, rank, iterations)
    else:
        objective, mean_error = jd_diag(F, G, n, r0, rank, iterations)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "objective": objective, "meanError": mean_error, "blas": blas_name()}


def main():
    if sys.argv[1:] == ["--serve"]:
        files, warm = {}, set()
        for line in sys.stdin:
            req = json.loads(line)
            if req["file"] not in files:
                files[req["file"]] = read_safetensors(req["file"])
            key = (req["file"], req["method"], req["rank"])
            if key not in warm:
                for _ in range(req.get("warmups", 1)):
                    timed(files[req["file"]], req["method"], req["rank"], req["iterations"])
                warm.add(key)
            print(json.dumps(timed(files[req["file"]], req["method"], req["rank"], req["iterations"])), flush=True)
        return
    path, method, rank, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    tensors = read_safetensors(path)
    timed(tensors, method, rank, 1)
    print(json.dumps(timed(tensors, method, rank, iterations)))


if __name__ == "__main__":
    main()
