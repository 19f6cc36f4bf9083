"""Datasets more than one task reads: MNIST and CIFAR-10 arrays, test photographs, image folders."""
