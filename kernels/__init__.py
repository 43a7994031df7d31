"""Hand-written kernel templates (LLVM IR generators) that the scheduler can call for ops whose
best code is not a fused loop nest: kernels/gemm.py."""
