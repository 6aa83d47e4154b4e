"""The networks of GAN-INT-CLS (Reed et al., "Generative Adversarial Text to Image Synthesis", 2016).

- Text encoders map token ids (N, L) (0 = padding) to an embedding (N, text_dim): the paper's
  character-level CNN-RNN (convolutions with max pooling over one-hot characters, a recurrent layer over
  the pooled sequence, its hidden states averaged over time), or a word-level recurrent encoder.
- The generator compresses the text embedding with a fully connected layer and leaky ReLU (the paper:
  1024 -> 128), concatenates it with the noise and runs a DCGAN generator.
- The matching-aware discriminator runs DCGAN's convolutions down to 4x4, compresses the embedding the
  same way, tiles it over the 4x4 map, concatenates it depth-wise, and scores the pair with a 1x1 then a
  4x4 convolution. One call scores one image batch against several caption batches (right and wrong
  text) with one pass through the image convolutions.
- ImageEmbedder: the image side of the symmetric structured loss that pretrains a text encoder (the paper
  used GoogLeNet features; here a DCGAN-style convolution stack).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gancore.models.dcgan import DCGANDiscriminator, DCGANGenerator, _norm, dcgan_init_


def _mean_over_tokens(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of (N, L, H) states over the positions where mask (N, L) is true."""
    mask = mask.to(states.dtype).unsqueeze(-1)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)


class WordTextEncoder(nn.Module):
    """Word ids -> embedding: word vectors, a GRU over them, its states averaged over the words."""

    def __init__(self, vocab_size: int, text_dim: int = 128, embed_dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = nn.GRU(embed_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, text_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(self.embed(tokens))
        return self.out(_mean_over_tokens(states, tokens != 0))


class CharCNNRNN(nn.Module):
    """Character ids -> embedding, the paper's char-CNN-RNN: one-hot characters, three convolutions of
    width 4 (the first two followed by max pooling), a GRU over the pooled sequence, its states averaged
    over time. The paper pools by 3 over 201 characters; captions here are tens of characters, so pooling
    is by 2. Padding is zeroed after every convolution, so a caption's embedding does not depend on how
    much padding follows it."""

    def __init__(self, alphabet_size: int, text_dim: int = 128, width: int = 128, hidden: int = 128) -> None:
        super().__init__()
        self.alphabet_size = alphabet_size
        self.convs = nn.ModuleList([nn.Conv1d(alphabet_size, width, 4), nn.Conv1d(width, width, 4),
                                    nn.Conv1d(width, width, 4)])
        self.rnn = nn.GRU(width, hidden, batch_first=True)
        self.out = nn.Linear(hidden, text_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = F.one_hot(tokens, self.alphabet_size).to(self.out.weight.dtype).transpose(1, 2)
        mask = (tokens != 0).to(x.dtype).unsqueeze(1)
        x = x * mask  # padding is all zeros
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(F.pad(x, (1, 2)))) * mask  # "same" length for an even kernel
            if i < len(self.convs) - 1:
                x, mask = F.max_pool1d(x, 2, ceil_mode=True), F.max_pool1d(mask, 2, ceil_mode=True)
        states, _ = self.rnn(x.transpose(1, 2))
        return self.out(_mean_over_tokens(states, mask[:, 0] > 0))


class TextProjection(nn.Sequential):
    """The paper's compression of the text embedding: a fully connected layer and leaky ReLU (0.2)."""

    def __init__(self, text_dim: int, proj_dim: int) -> None:
        super().__init__(nn.Linear(text_dim, proj_dim), nn.LeakyReLU(0.2, inplace=True))


class TextConditionedGenerator(nn.Module):
    """(z (N, latent_dim), text embedding (N, text_dim)) -> images (N, channels, resolution, resolution)."""

    def __init__(self, latent_dim: int, text_dim: int, proj_dim: int, resolution: int = 64, channels: int = 3,
                 width: int = 64, norm: str = "batch") -> None:
        super().__init__()
        self.project = TextProjection(text_dim, proj_dim)
        self.body = DCGANGenerator(latent_dim + proj_dim, resolution, channels, width, norm)
        dcgan_init_(self.project)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([z, self.project(text)], dim=1))


class MatchingAwareDiscriminator(nn.Module):
    """(images, text embedding) -> one logit per pair, (N,): does the image look real AND match the text?

    `joint_norm` is the norm after the 1x1 convolution on [image features | text]. The paper batch-normalises
    every convolution; "batch" does so here too, over each caption batch on its own, as separate forward
    passes would. Batch statistics taken over right and wrong pairs together would let D tell a batch of
    fake pairs (all claiming their captions) from real ones by the statistics alone, so they are never
    mixed. "none" (a bias, no norm) is the default: it bound captions best (docs/text-to-image.md)."""

    def __init__(self, text_dim: int, proj_dim: int, resolution: int = 64, channels: int = 3, width: int = 64,
                 norm: str = "batch", joint_norm: str = "none") -> None:
        super().__init__()
        convs = DCGANDiscriminator(resolution, channels, width, norm).net
        self.features = convs[:-1]  # down to (width * 2^k, 4, 4); the last 4x4 conv is replaced by `head`
        depth = convs[-1].in_channels
        self.project = TextProjection(text_dim, proj_dim)
        self.joint = nn.Sequential(nn.Conv2d(depth + proj_dim, depth, 1, bias=joint_norm == "none"),
                                   _norm(joint_norm, depth), nn.LeakyReLU(0.2, inplace=True))
        self.head = nn.Conv2d(depth, 1, 4)
        dcgan_init_(self)

    def forward(self, images: torch.Tensor, *texts: torch.Tensor) -> torch.Tensor:
        """Logits (len(texts), N) of the images paired with each batch of text embeddings in turn; the
        image convolutions run once."""
        features = self.features(images)
        if isinstance(self.joint[1], nn.BatchNorm2d):  # batch statistics: one caption batch at a time
            return torch.stack([self._score(features, text) for text in texts])
        return self._score(features.repeat(len(texts), 1, 1, 1), torch.cat(texts)).reshape(len(texts), -1)

    def _score(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        tiled = self.project(text)[:, :, None, None].expand(-1, -1, *features.shape[2:])
        return self.head(self.joint(torch.cat([features, tiled.to(features.dtype)], dim=1))).reshape(-1)


class JointTextDiscriminator(nn.Module):
    """A matching-aware discriminator that owns its text encoder, so that D's loss trains both (the
    'joint' mode): (images, token batches...) -> logits (len(token batches), N)."""

    def __init__(self, encoder: nn.Module, critic: MatchingAwareDiscriminator) -> None:
        super().__init__()
        self.encoder = encoder
        self.critic = critic

    def forward(self, images: torch.Tensor, *tokens: torch.Tensor) -> torch.Tensor:
        return self.critic(images, *(self.encoder(t) for t in tokens))


class ImageEmbedder(nn.Module):
    """Images -> (N, text_dim): the image encoder that the symmetric structured loss trains with the text one."""

    def __init__(self, text_dim: int, resolution: int = 64, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        convs = DCGANDiscriminator(resolution, channels, width, "none").net
        self.features = convs[:-1]
        self.out = nn.Linear(convs[-1].in_channels * 16, text_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(images).flatten(1))


class StructuredEmbedding(nn.Module):
    """A text encoder and the image embedder it is pretrained against (the 'pretrain' mode):
    tokens -> text embeddings, or (tokens, images) -> (text embeddings, image embeddings)."""

    def __init__(self, text: nn.Module, image: ImageEmbedder) -> None:
        super().__init__()
        self.text = text
        self.image = image

    def forward(self, tokens: torch.Tensor,
                images: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        text = self.text(tokens)
        return text if images is None else (text, self.image(images))
