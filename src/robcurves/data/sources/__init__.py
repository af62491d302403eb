"""Converters from the published formats of the downloaded data sets to :class:`Dataset`.

One module per format: ``idx`` (MNIST, Fashion-MNIST), ``cifar10``, ``gtsrb``,
``har`` and ``tinyimagenet``; ``archive`` holds what the zip-based ones share.
Each ``convert_*`` takes the folder of verified raw files and returns the train
and test splits.
"""
