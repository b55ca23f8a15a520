"""Reading chest radiographs: DICOM, PNG and JPEG to a grey float image in [0, 1].

The modules, by job:

- :mod:`~chestaid.imaging.intake`: :func:`read_for_scoring`, the one way an image to
  be scored is read (worker, web, command line), and :func:`read_image`;
- :mod:`~chestaid.imaging.dicom_file`: a DICOM file's dataset, pixel data deferred,
  deflate inflated within a budget, and a receiver's strict read of its header;
- :mod:`~chestaid.imaging.dicom_grey`: a dataset to a grey image through the Modality
  and VOI LUTs, and the check that it is a frontal chest radiograph;
- :mod:`~chestaid.imaging.reduced`: decoding at the lowest resolution the image's uses
  need, where the codec can (JPEG 2000, 8-bit JPEG baseline);
- :mod:`~chestaid.imaging.raster`: PNG and JPEG;
- :mod:`~chestaid.imaging.uids`: the SOP classes accepted and transfer syntaxes decoded,
  and :func:`check_uid`, the UID syntax check.

Anything that cannot be scored is refused with a typed error saying why, and the
pixel budget is checked from the header before any pixel is decoded.
"""

from chestaid.imaging.dicom_file import (
    DEFAULT_MAX_INFLATED_BYTES,
    DEFER_SIZE,
    read_dicom_dataset,
    read_dicom_header,
)
from chestaid.imaging.dicom_grey import (
    CHEST_BODY_PARTS,
    CHEST_MODALITIES,
    CHEST_SOP_CLASSES,
    FRONTAL_VIEWS,
    GREY_PHOTOMETRICS,
    NON_DIAGNOSTIC_IMAGE_TYPES,
    SC_MODALITIES,
    check_chest_radiograph,
    dataset_to_grey,
)
from chestaid.imaging.grey_image import DEFAULT_MAX_PIXELS, GreyImage, check_decoded_size
from chestaid.imaging.intake import (
    ScoringInput,
    read_dicom,
    read_for_scoring,
    read_image,
)
from chestaid.imaging.raster import (
    COLOUR_MEAN_DEVIATION,
    COLOUR_P99_DEVIATION,
    JPEG_MAGIC,
    PNG_MAGIC,
    read_raster,
)
from chestaid.imaging.reduced import (
    INPUT_OVERSAMPLING,
    NeededSize,
    decode_reduced,
    needed_size,
    reduction_level,
)
from chestaid.imaging.uids import (
    ACCEPTED_SOP_CLASSES,
    DECODABLE_TRANSFER_SYNTAXES,
    NATIVE_TRANSFER_SYNTAXES,
    REPORT_SOP_CLASSES,
    check_uid,
)

__all__ = [
    "ACCEPTED_SOP_CLASSES",
    "CHEST_BODY_PARTS",
    "CHEST_MODALITIES",
    "CHEST_SOP_CLASSES",
    "COLOUR_MEAN_DEVIATION",
    "COLOUR_P99_DEVIATION",
    "DECODABLE_TRANSFER_SYNTAXES",
    "DEFAULT_MAX_INFLATED_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFER_SIZE",
    "FRONTAL_VIEWS",
    "GREY_PHOTOMETRICS",
    "INPUT_OVERSAMPLING",
    "JPEG_MAGIC",
    "NATIVE_TRANSFER_SYNTAXES",
    "NON_DIAGNOSTIC_IMAGE_TYPES",
    "PNG_MAGIC",
    "REPORT_SOP_CLASSES",
    "SC_MODALITIES",
    "GreyImage",
    "NeededSize",
    "ScoringInput",
    "check_chest_radiograph",
    "check_decoded_size",
    "check_uid",
    "dataset_to_grey",
    "decode_reduced",
    "needed_size",
    "read_dicom",
    "read_dicom_dataset",
    "read_dicom_header",
    "read_for_scoring",
    "read_image",
    "read_raster",
    "reduction_level",
]
