"""What a table is (rows, protocol per profile, the paper's numbers), its cells and their cost."""
