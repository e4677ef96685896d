"""Pure core: numpy / scipy / scikit-image / ortools / numba only (no Qt, napari or torch)."""
