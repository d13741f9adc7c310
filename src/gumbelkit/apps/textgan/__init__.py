"""Text GAN with Gumbel-Softmax on SeqGAN's synthetic oracle and on Jane Austen's novels."""
