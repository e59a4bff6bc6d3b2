import numpy as np
import pytest
import scipy.sparse as sp

from feedback import diversity


def clusters(n_per: int = 20, centres: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``centres`` tight clusters far apart; the first cluster is the most uncertain, so uncertainty
    alone would pick from it only."""
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(10.0 * c, 0.1, size=(n_per, 2)) for c in range(centres)])
    u = np.concatenate([np.full(n_per, 0.9 - 0.1 * c) for c in range(centres)]) + rng.uniform(0, 0.01, n_per * centres)
    return X, u


def test_top_candidates_orders_by_uncertainty_and_breaks_ties_by_index() -> None:
    u = np.array([0.2, 0.9, 0.5, 0.9, 0.1, 0.5])
    assert diversity.top_candidates(u, 3).tolist() == [1, 3, 2]
    assert diversity.top_candidates(u, 4).tolist() == [1, 3, 2, 5]
    assert diversity.top_candidates(u, 10).tolist() == [1, 3, 2, 5, 0, 4]
    excluded = np.array([False, True, False, False, False, False])
    assert diversity.top_candidates(u, 2, exclude=excluded).tolist() == [3, 2]


@pytest.mark.parametrize("method", ["kcenter", "kmeans", "kmeanspp"])
def test_diverse_methods_take_one_row_per_cluster(method: diversity.Method) -> None:
    X, u = clusters()
    top = diversity.select_batch(X, u, 5, method="top", candidate_factor=20)
    assert set(top.indices // 20) == {0}  # uncertainty alone: five near-duplicates
    batch = diversity.select_batch(X, u, 5, method=method, candidate_factor=20, rng=np.random.default_rng(0))
    assert sorted(batch.indices // 20) == [0, 1, 2, 3, 4]


def test_kcenter_hands_out_the_most_uncertain_first_then_the_farthest() -> None:
    X = np.array([[0.0], [0.1], [5.0], [10.0]])
    u = np.array([1.0, 0.99, 0.5, 0.5])
    batch = diversity.select_batch(X, u, 3, method="kcenter", candidate_factor=2, uncertainty_power=0.0)
    assert batch.indices.tolist() == [0, 3, 2]
    assert batch.uncertainty.tolist() == [1.0, 0.5, 0.5]


def test_kcenter_seeded_by_labeled_rows_avoids_them() -> None:
    X = np.array([[0.0], [0.1], [5.0], [10.0]])
    u = np.array([1.0, 0.99, 0.5, 0.5])
    labeled = np.array([[0.05], [10.0]])
    batch = diversity.select_batch(X, u, 1, method="kcenter", candidate_factor=4, labeled_features=labeled)
    assert batch.indices.tolist() == [2]


def test_candidates_bound_the_choice() -> None:
    X, u = clusters()
    # Candidates are the 10 most uncertain: all in the first cluster, whatever the method.
    batch = diversity.select_batch(X, u, 5, method="kcenter", candidate_factor=2)
    assert set(batch.indices // 20) == {0}


def test_sparse_and_dense_features_choose_alike() -> None:
    X, u = clusters()
    dense = diversity.select_batch(X, u, 5, method="kcenter", candidate_factor=20)
    sparse = diversity.select_batch(sp.csr_matrix(X), u, 5, method="kcenter", candidate_factor=20)
    coo = diversity.select_batch(sp.coo_matrix(X), u, 5, method="kcenter", candidate_factor=20)
    assert dense.indices.tolist() == sparse.indices.tolist() == coo.indices.tolist()
    wide = sp.hstack([sp.csr_matrix(X), sp.csr_matrix((len(X), 400))], format="csr")  # takes the SVD path
    batch = diversity.select_batch(wide, u, 5, method="kmeans", candidate_factor=20, rng=np.random.default_rng(0))
    assert sorted(batch.indices // 20) == [0, 1, 2, 3, 4]


def test_batch_priorities_decrease_and_queue_puts_the_batch_on_top() -> None:
    X, u = clusters()
    batch = diversity.select_batch(X, u, 5, method="kcenter", candidate_factor=20)
    assert np.all(np.diff(batch.priorities) < 0) and batch.priorities.min() > 1.0 and batch.priorities.max() <= 2.0
    priorities = diversity.queue_priorities(u, batch)
    order = np.argsort(-priorities, kind="stable")
    assert order[:5].tolist() == batch.indices.tolist()
    rest = order[5:]
    assert np.all(np.diff(u[rest]) <= 0)  # then the others by uncertainty
    assert priorities[rest].max() <= 1.0


def test_duplicates_and_small_pools() -> None:
    X = np.zeros((6, 3))
    u = np.array([0.1, 0.5, 0.4, 0.3, 0.2, 0.6])
    for method in diversity.METHODS:
        batch = diversity.select_batch(X, u, 4, method=method, rng=np.random.default_rng(1))
        assert len(set(batch.indices.tolist())) == 4
    assert diversity.select_batch(X, u, 10).indices.tolist() == [5, 1, 2, 3, 4, 0]
    assert diversity.select_batch(X, u, 0).indices.tolist() == []
    with pytest.raises(ValueError):
        diversity.select_batch(X[:3], u, 2)


def test_gradient_embedding_is_residual_times_features() -> None:
    X = np.array([[1.0, 2.0], [3.0, -1.0]])
    P = np.array([[0.7, 0.3], [0.4, 0.6]])
    expected = np.array([[-0.3, -0.6, 0.3, 0.6], [1.2, -0.4, -1.2, 0.4]])
    assert diversity.gradient_embedding(X, P) == pytest.approx(expected)
    assert diversity.gradient_embedding(sp.csr_matrix(X), P).toarray() == pytest.approx(expected)


def test_large_pool_works_on_candidates_only() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((100_000, 16))
    u = rng.random(100_000)
    batch = diversity.select_batch(X, u, 50, method="kmeans", candidate_factor=10, rng=rng)
    assert len(np.unique(batch.indices)) == 50
    assert u[batch.indices].min() >= np.sort(u)[-500]  # every pick is among the 500 most uncertain
