"""Network architectures: generators, discriminators and critics that families assemble."""

from gancore.models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from gancore.models.mlp import MLPCritic, MLPGenerator
from gancore.models.pix2pix import (
                                    NLayerDiscriminator,
                                    PixelDiscriminator,
                                    ResnetBlock,
                                    ResnetGenerator,
                                    UnetGenerator,
                                    UnetSkipConnectionBlock,
                                    init_weights_,
)

# pix2pixHD's NLayerDiscriminator and ResnetBlock differ from junyanz's above: import them from models.pix2pixhd
from gancore.models.pix2pixhd import Encoder, GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator
from gancore.models.srgan import SRGANDiscriminator, SRResNet
from gancore.models.stargan import StarGANDiscriminator, StarGANGenerator
from gancore.models.vgg import VGG19Features

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLPCritic", "MLPGenerator", "NLayerDiscriminator",
           "PixelDiscriminator", "ResnetBlock", "ResnetGenerator", "UnetGenerator", "UnetSkipConnectionBlock",
           "dcgan_init_", "init_weights_"]
__all__ += ["Encoder", "GlobalGenerator", "LocalEnhancer", "MultiscaleDiscriminator"]
__all__ += ["SRGANDiscriminator", "SRResNet", "StarGANDiscriminator", "StarGANGenerator", "VGG19Features"]
