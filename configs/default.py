"""Default configuration: the paper's settings on the synthetic corpus (128×128 crops).

    python train.py --config configs/default.py --workdir runs/default
    python evaluate.py --checkpoint runs/default

Stages: `stage = "all"` trains STL then LTV; "stl" or "ltv" trains one; "syncnet" the lip-sync expert
(configs/syncnet.py). Each stage has its own
batch size, steps and learning rate under config.stl / config.ltv. Use another dataset with
`--config.data.name=grid/crop256 --config.data.manual_dir=/path/to/GRID` (see README).
"""

from thflax.configlib import ConfigDict, placeholder


def get_config() -> ConfigDict:
    c = ConfigDict()
    c.seed = 0
    c.stage = "all"
    c.half_precision = False  # bfloat16 activations/matmuls, float32 params and optimiser state

    c.data = ConfigDict()
    c.data.name = "synthetic_talking_heads/medium"
    c.data.data_dir = ""  # "" = TFDS default (~/tensorflow_datasets)
    c.data.manual_dir = ""
    c.data.prepare = True  # build the dataset first if it is not there
    c.data.num_workers = placeholder(int)  # None = all cores
    c.data.shuffle_buffer = 512
    c.data.prefetch = 2
    c.data.keep_ids = False
    c.data.train_split = "train"
    # Training-time metrics (and any tuning) read validation; `test` is read only by evaluate.py /
    # reproduce.py, and input_pipeline.pipeline refuses it here.
    c.data.eval_split = "validation"

    # Stage 1: speech -> landmarks (paper §3.1).
    c.stl = ConfigDict()
    c.stl.split = True  # False = "w/o Splitnet" (one branch for all 68 points)
    c.stl.loss = "wing"  # or "mse" / "l1"
    c.stl.wing_w = 10.0
    c.stl.wing_eps = 2.0
    c.stl.head_weight = 1.0
    # Extras of the head branch (off = the paper's): see thflax.models.stl.STLNet, BENCHMARKS.md "head branch".
    c.stl.head_audio = "own"  # "own" (f_a2, the paper) | "lip" (share the lip branch's f_a1) | "lip_frozen"
    c.stl.head_template_in_gru = False  # True: the template enters the head GRU as eq. 4 does (paper: after it)
    # The head's output layer reads the lip GRU's output too, no gradient back ("none": the paper's eq. 5;
    # "lip": trained by both): the paper's head branch learnt ~nothing of the jaw (BENCHMARKS.md "head branch").
    c.stl.head_lip_state = "lip_frozen"
    c.stl.velocity_weight = 0.0  # extra: loss on the head's frame-to-frame motion (split "head", joint "full")
    # Inference only (not trained, not in the checkpoint signature): the predicted head's displacement from
    # the photo's pose is multiplied by this. A per-frame loss predicts a damped, averaged head; a gain
    # chosen on validation (benchmarks/head_gain.py) gives it back the real head's speed. 1 = untouched.
    c.stl.head_gain = 1.0
    c.stl.n_mfcc = 20
    c.stl.mfcc_window = 20
    c.stl.clip_len = 32
    c.stl.audio_channels = (32, 64, 128)
    c.stl.audio_features = 512  # paper
    c.stl.template_features = 256  # paper
    c.stl.gru_features = 256
    c.stl.batch_size = 32
    c.stl.eval_batch_size = 32
    c.stl.eval_batches = 2
    c.stl.num_steps = 3000
    c.stl.learning_rate = 1e-4  # paper
    c.stl.grad_clip = 0.0
    c.stl.ema_decay = 0.0

    # Stage 2: landmarks -> video (paper §3.2).
    c.ltv = ConfigDict()
    c.ltv.image_size = 128  # must match the dataset's crop size
    c.ltv.generator = "fast"  # preset in thflax.models.ltv.GENERATOR_PRESETS
    c.ltv.generator_overrides = {}  # field -> value changes to that preset (thflax.models.ltv.Generator fields)
    c.ltv.attention = True  # False = "w/o Attention"
    c.ltv.adam_b1 = 0.9  # the paper gives Adam and lr only; PyTorch's default betas
    c.ltv.disc_channels = 32
    c.ltv.disc_layers = 3
    # Zero-pad convolution channels to this multiple inside each call (8 for cuDNN on GPUs; 0 = off): the
    # same function and parameters, fewer layout/padding kernels (thflax.models.ltv.channel_padded_conv).
    c.ltv.conv_channel_multiple = 0
    c.ltv.mse_weight = 100.0  # eq. 10 has unit weights; with pixels in [-1, 1] the GAN term would dominate (pix2pix uses 100)
    c.ltv.gan_weight = 1.0
    c.ltv.l1_weight = 0.0  # extra, off in the paper config
    c.ltv.mask_weight = 0.0  # extra: L1 on the attention mask, off in the paper config
    c.ltv.fm_weight = 0.0  # extra: discriminator feature matching (pix2pixHD), off in the paper config
    c.ltv.mouth_weight = 0.0  # extra: L1 inside the target's lips (where a warp cannot show the open mouth)
    c.ltv.eyes_weight = 0.0  # extra: L1 from brow to lower lid (where a warp cannot close an eye)
    # extra: the share of training pairs whose target is a frame with closed eyes (eye aspect ratio under 0.6 of
    # the utterance's median), where the utterance has one; 0 = targets drawn uniformly (blinks are ~2 % of frames)
    c.ltv.closed_eye_share = 0.0
    c.ltv.perceptual_weight = 0.0  # extra: distance in a face network trained here (thflax/training/perceptual.py)
    c.ltv.perceptual_net = ""  # that network's file (python -m thflax.training.perceptual --out FILE)
    # extra: Wav2Lip's expert sync loss, -log of a frozen lip-sync expert's in-sync probability on windows of 5
    # generated consecutive frames (thflax/training/sync_loss.py). On (> 0), each LTV training pair also carries
    # the landmarks of the 5 consecutive frames around its target (its reference drawn once for all five, as in
    # generation) and the MFCC windows of the shifts within +-config.syncnet.max_shift of their middle frame
    # (`ltv_stage.sync_windows`); the pair itself and every random draw are those of the stream with it off.
    c.ltv.sync_weight = 0.0  # 0.3 met LSE but not the independent measures: off (BENCHMARKS.md, 2026-12-07)
    c.ltv.sync_expert = ""  # the expert: a workdir or export bundle with one (python -m thflax.training.syncnet_stage)
    c.ltv.pairs_per_example = 4
    c.ltv.batch_size = 16
    c.ltv.eval_batch_size = 16
    c.ltv.eval_batches = 2
    c.ltv.num_steps = 3000
    c.ltv.learning_rate = 1e-4  # paper
    c.ltv.grad_clip = 0.0
    c.ltv.ema_decay = 0.0

    # The lip-sync expert (SyncNet, thflax/models/syncnet.py) that LSE-C / LSE-D are measured with: trained
    # here on the training split (`python -m thflax.training.syncnet_stage`, configs/syncnet.py; the demo
    # trains it as a third stage); not part of the generation model ("all" = stl, ltv).
    c.syncnet = ConfigDict()
    c.syncnet.lip_channels = (32, 64, 64, 64, 64, 128)  # the public net's: 96, 256, 256, 256, 256, 512
    c.syncnet.audio_channels = (16, 32, 48, 48, 48, 128)  # the public net's: 64, 192, 384, 256, 256, 512
    c.syncnet.fc_features = 128  # public: 512
    c.syncnet.embed_features = 128  # public: 1024
    c.syncnet.stem_pool = False  # public: True (224x224 input); False lets the 48x64 mouth region reach 1x1
    # Normalisation per tower (public: "batch" both). The video tower's BatchNorm statistics over a batch of a
    # few clips (a few faces) differ from its running averages over all faces: evaluated with those, a
    # BatchNorm expert lost most of what it had learned on held-out utterances; GroupNorm has no batch
    # statistics. The audio tower keeps BatchNorm (MFCC are normalised per utterance already; GroupNorm there
    # would normalise away a window's loudness). Figures: BENCHMARKS.md.
    c.syncnet.audio_norm = "batch"
    c.syncnet.video_norm = "group"
    # The mouth region of the face crop (x0, y0, x1, y1, normalised) and its size (height, width); the public
    # net reads the whole face at 224x224.
    c.syncnet.region = (0.25, 0.475, 0.75, 0.85)
    c.syncnet.image_size = (48, 64)
    c.syncnet.n_mfcc = 13  # the first 13 of the dataset's MFCC coefficients (the public net's count)
    # Contrastive, multi-way (Chung et al. 2019, "Perfect match"): each video window against the audio of every
    # shift within ±max_shift frames of the same clip (the in-sync one and those shifted by at least min_shift),
    # softmax over minus the distances.
    c.syncnet.min_shift = 3  # frames: shifted windows share at most 2 of their 5 frames with the in-sync one
    c.syncnet.max_shift = 15  # the offsets LSE-C / LSE-D search over
    c.syncnet.clip_frames = 40  # consecutive frames per training clip (one clip per utterance and epoch)
    c.syncnet.windows_per_clip = 8  # video windows per clip, evenly spaced
    c.syncnet.augment_shift = 4  # px: clips moved by up to this much, mirrored, brightness/contrast changed
    c.syncnet.batch_size = 4  # clips
    c.syncnet.eval_batch_size = 4
    c.syncnet.eval_batches = 6
    c.syncnet.num_steps = 600
    c.syncnet.learning_rate = 1e-3
    c.syncnet.grad_clip = 0.0
    c.syncnet.ema_decay = 0.0

    c.train = ConfigDict()
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    c.train.max_to_keep = 3
    c.train.async_checkpoint = True
    c.train.device_prefetch = 2
    c.train.profile_steps = 0  # > 0: jax.profiler trace of that many steps into <workdir>/<stage>/profile
    c.train.profile_start = 5
    return c
