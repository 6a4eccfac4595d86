//! Similarity measures (CKA, CCA family, Procrustes) from the same statistics.
