"""Placeholder: the rest of the model zoo is being written (MLP, LeNet, AlexNet, VGG, ResNet, ViT)."""
