"""One module per `graphstore` sub-command; option help shared by several of them."""

VIDEO_FEATURES_HELP = ("precomputed video features: the reference layout DIR/<platform>/<video id>.pth, "
                       "DIR/<sample id>.npy, a .npy matrix in node order or a .parquet file (sample_id, features); "
                       "zeros where a video has none")


def print_video_import(features_meta: dict) -> None:
    """Print how many videos a `--video-features` import matched, if the features came from one."""
    from graphstore.featurize.video import describe

    line = describe(features_meta)
    if line:
        print(line)
