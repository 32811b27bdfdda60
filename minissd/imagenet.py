"""The input statistics of ImageNet-trained VGG16, which SSD's base network comes from.

SSD subtracts these channel means from every input pixel (no division by a standard deviation),
as the VGG16 weights it starts from were trained. Both sides use this one constant: the data
transforms that subtract it (``minissd.data.transforms``) and the model configs that record it
(``minissd.ssd.model.SSDConfig.mean``), without either importing the other.
"""

#: The VGG16 ImageNet channel means, RGB order (Caffe lists them BGR: 104, 117, 123).
VGG_MEAN = (123.0, 117.0, 104.0)
