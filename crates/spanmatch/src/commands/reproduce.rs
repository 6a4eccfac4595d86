//! `spanmatch reproduce`: the paper's experiment end to end. Trains (or reuses) one net per
//! seed, then makes one forward pass over the test set with every net (the trained nets and,
//! unless `--no-untrained`, the same seeds' nets at initialisation): it scores each net's test
//! accuracy and streams every layer's activations into the engine for every seed pair (trained
//! and untrained), the self-checks and the null. Writes `results.json` (with each neuron's
//! threshold ε*(v), the simple matches of the trained pairs and the top test images of selected
//! matched neurons) and an HTML report with figures.

use crate::commands::train::{Preset, TrainArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use spanmatch_core::controls::{chunk_memory_bytes, MAX_CHUNK_BYTES};
use spanmatch_core::measures::Measure;
use spanmatch_core::Side;
use spanmatch_engine::analysis::{analyse_pair, link_untrained, LayerLabel, PairInput};
use spanmatch_engine::multi::{PairAccumulators, PairSpec};
use spanmatch_engine::options::{Dead, NullKind, Options};
use spanmatch_engine::results::{
    write_results, Comparison, ComparisonKind, Front, LayerSummary, NetSummary, NeuronViews,
    Results,
};
use spanmatch_engine::views::{self, InputInfo, ViewOptions};
use spanmatch_engine::Progress;
use spanmatch_report::neurons::encode_png_base64;
use spanmatch_train::data::{self, DataOptions, Dataset, DatasetKind, Split};
use spanmatch_train::extract::{extract, ActivationSink, TeeSink};
use spanmatch_train::model::LayerInfo;
use spanmatch_train::model::LayerKind;
use spanmatch_train::topk::TopInputs;
use spanmatch_train::train::{initial_net, state_digest, train_on, TrainOptions, TrainedNet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `spanmatch reproduce`.
#[derive(Debug, Clone, Args)]
pub struct ReproduceArgs {
    /// Dataset: fashion-mnist (installed by `apt-get install dataset-fashion-mnist`), mnist or
    /// cifar10 (found in --data-dir, $SPANMATCH_DATA or the user cache; see --download).
    #[arg(long, value_parser = crate::commands::train::dataset_parser(), default_value = "fashion-mnist")]
    pub dataset: DatasetKind,
    /// Architecture: vgg11|vgg13|vgg16|vgg19 (suffix _bn: batch norm), plain20|32|44|56, mlp,
    /// small-cnn.
    #[arg(long, default_value = "vgg11_bn")]
    pub arch: String,
    /// Channel width multiplier for VGG / plain nets (the paper: 1).
    #[arg(long, default_value_t = 0.25)]
    pub width: f64,
    /// Hidden widths of the classifier (comma-separated; VGG default 512,512).
    #[arg(long, value_delimiter = ',', default_value = "128,128")]
    pub hidden: Vec<usize>,
    /// Training epochs per net.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Seeds, one net each; every pair of seeds is compared (the paper: 0,1,2).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// ε values at which the maximum match similarity is reported (all from one ε-profile).
    #[arg(long, value_delimiter = ',', default_value = "0.15,0.2,0.25,0.3,0.5")]
    pub eps: Vec<f64>,
    /// Baseline measures computed from the same statistics (comma-separated: cka, cca, svcca,
    /// pwcca, procrustes; "none" for none).
    #[arg(long, value_delimiter = ',', default_value = "cka")]
    pub measures: Vec<String>,
    /// ε of the simple matches computed for every layer of every trained seed pair (their
    /// indices, sizes and sines go to results.json; the report lists them and shows what the
    /// largest ones respond to).
    #[arg(long, default_value_t = 0.5)]
    pub simple: f64,
    /// Skip the simple matches (and the views of what matched neurons respond to).
    #[arg(long)]
    pub no_simple: bool,
    /// Test images kept per neuron for the views of what matched neurons respond to (tracked in
    /// the extraction pass for the first two seeds' trained nets; 0: no views).
    #[arg(long, default_value_t = 8)]
    pub top_inputs: usize,
    /// Train on only the first N training images (0: all). The default keeps the whole run
    /// under 15 minutes on a 2-core laptop.
    #[arg(long, default_value_t = 30_000)]
    pub train_limit: usize,
    /// Compare on only the first N test images (default: all).
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Images per extraction batch.
    #[arg(long, default_value_t = 200)]
    pub batch_size: usize,
    /// `paper`: the paper's configuration (VGG-16 on CIFAR-10, 160 epochs, width 1; days on a
    /// CPU). Explicit flags still override it.
    #[arg(long, value_parser = ["paper"])]
    pub preset: Option<String>,
    /// Output directory: results.json, report.html, PNG figures and checkpoints/.
    #[arg(long, default_value = "spanmatch-report")]
    pub out: PathBuf,
    /// Directory searched first for the dataset files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Download the dataset from its canonical source (SHA-256 verified) if not found locally.
    #[arg(long)]
    pub download: bool,
    /// What to do with dead neurons (drop: excluded but counted, as the reference code; match:
    /// the literal definition).
    #[arg(long, value_parser = ["drop", "match"], default_value = "drop")]
    pub dead: String,
    /// Skip the untrained baseline (the same seeds' nets at initialisation, compared like the
    /// trained pairs in the same pass).
    #[arg(long)]
    pub no_untrained: bool,
    /// Confidence intervals over test images: the statistics of each trained seed pair (and of
    /// its untrained pair) are kept per chunk of test images (contiguous chunks, all rows of an
    /// image in one chunk) and bootstrapped over chunks. Memory per pair and layer: chunks x
    /// (n1 + n2)² x 8 bytes (20 chunks of a 512-channel layer pair: 160 MiB), capped at 2 GiB
    /// per layer.
    #[arg(long, default_value_t = 20)]
    pub chunks: usize,
    /// Bootstrap resamples for the 95 % percentile intervals of mms (every ε) and linear CKA.
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Seed of the bootstrap resampling and of the random rotations of the null.
    #[arg(long, default_value_t = 0)]
    pub bootstrap_seed: u64,
    /// Random rotations of net B's layer for the neuron-basis null of each trained pair
    /// (0: no null).
    #[arg(long, default_value_t = 5)]
    pub null_draws: usize,
    /// The mms of the mean-centred activations is reported by default beside the paper's
    /// uncentred match; this flag is accepted and changes nothing.
    #[arg(long, hide = true)]
    pub center: bool,
    /// Leave out the match of the mean-centred activations (reported by default beside the
    /// paper's uncentred one).
    #[arg(long, conflicts_with = "center")]
    pub no_center: bool,
}

fn parse_measures(names: &[String]) -> Result<Vec<Measure>> {
    names
        .iter()
        .filter(|n| !n.is_empty() && n.as_str() != "none" && n.as_str() != "match")
        .map(|n| {
            n.parse::<Measure>()
                .map_err(|e| anyhow::anyhow!("--measures: {e}"))
        })
        .collect()
}

fn bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
    ) {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_prefix(what.to_string());
    b
}

/// Peak resident memory of this process in MiB (Linux), if known.
pub fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the experiment and writes the report.
pub fn run(args: &ReproduceArgs) -> Result<()> {
    let started = Instant::now();
    let mut args_eff = args.clone();
    if args.preset.as_deref() == Some("paper") {
        args_eff.dataset = DatasetKind::Cifar10;
        args_eff.arch = "vgg16".into();
        args_eff.width = 1.0;
        args_eff.hidden = vec![512, 512];
        args_eff.epochs = 160;
        args_eff.train_limit = 0;
    }
    let args = &args_eff;
    if args.seeds.len() < 2 {
        bail!(
            "--seeds needs at least two seeds to compare, got {:?}",
            args.seeds
        );
    }
    let mut seen = args.seeds.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != args.seeds.len() {
        bail!("--seeds has duplicates: {:?}", args.seeds);
    }
    if let Some(e) = args.eps.iter().find(|e| !(0.0..=1.0).contains(*e)) {
        bail!("--eps: ε = {e} is outside [0, 1] (ε is the sine of an angle)");
    }
    if !(0.0..=1.0).contains(&args.simple) {
        bail!("--simple: ε = {} is outside [0, 1]", args.simple);
    }
    let simple_eps = (!args.no_simple).then_some(args.simple);
    let measures = parse_measures(&args.measures)?;
    if args.chunks == 0 {
        bail!("--chunks must be at least 1 (the number of chunks of test images the bootstrap resamples)");
    }
    if args.bootstrap == 0 {
        bail!("--bootstrap must be at least 1 resample");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output directory {}", args.out.display()))?;

    // 1. One net per seed (reusing finished checkpoints).
    let data_opts = DataOptions {
        data_dir: args.data_dir.clone(),
        allow_download: args.download,
    };
    let mut nets: Vec<TrainedNet> = Vec::new();
    let mut summaries = Vec::new();
    let test = {
        let mut t =
            data::load(args.dataset, Split::Test, &data_opts).context("loading the test set")?;
        if let Some(n) = args.test_limit {
            t.truncate(n);
        }
        t
    };
    let train_set = {
        let mut t = data::load(args.dataset, Split::Train, &data_opts)
            .context("loading the training set")?;
        if args.train_limit > 0 {
            t.truncate(args.train_limit);
        }
        t
    };
    for &seed in &args.seeds {
        let targs = TrainArgs {
            dataset: args.dataset,
            model: args.arch.clone(),
            width: args.width,
            hidden: Some(args.hidden.clone()),
            preset: Some(if args.preset.is_some() {
                Preset::Reference
            } else {
                Preset::Fast
            }),
            seed,
            epochs: Some(args.epochs),
            batch_size: None,
            lr: None,
            lr_milestones: if args.preset.is_some() {
                None
            } else {
                Some(vec![args.epochs.max(2) - 1])
            },
            lr_gamma: None,
            momentum: None,
            weight_decay: None,
            train_limit: (args.train_limit > 0).then_some(args.train_limit),
            test_limit: args.test_limit,
            out: args.out.join("checkpoints").join(format!("seed-{seed}")),
            data_dir: args.data_dir.clone(),
            download: args.download,
            skip_epoch_eval: true,
            no_progress: false,
        };
        let config = targs.to_config()?;
        eprintln!(
            "net seed {seed}: {} on {} for {} epochs",
            config.model_name, args.dataset, config.epochs
        );
        // No test set for the trainer: it would evaluate the last epoch in a forward pass of its
        // own; the extraction pass below scores the nets instead.
        let tn = train_on(
            &config,
            &train_set,
            None,
            &TrainOptions {
                out_dir: Some(targs.out.clone()),
                progress: std::io::stderr().is_terminal(),
                data: data_opts.clone(),
                eval_each_epoch: false,
            },
        )
        .with_context(|| format!("training the net of seed {seed}"))?;
        let train_seconds: f64 = tn.history.iter().map(|h| h.seconds).sum();
        // The test accuracy comes from the extraction pass below (one forward pass per net).
        summaries.push(NetSummary {
            seed,
            test_accuracy: f64::NAN,
            epochs: tn.history.len(),
            train_seconds,
        });
        nets.push(tn);
    }
    let t_train = started.elapsed().as_secs_f64();
    if test.len() < args.chunks {
        bail!(
            "--chunks {}: more chunks than test images ({}); use at most {} chunks",
            args.chunks,
            test.len(),
            test.len()
        );
    }
    for l in nets[0].net.layers() {
        let c = l.channels();
        let bytes = chunk_memory_bytes(c, c, args.chunks);
        if bytes > MAX_CHUNK_BYTES {
            bail!(
                "layer {}: {} chunks x ({c} + {c})² x 8 bytes = {:.0} MiB of per-chunk statistics per seed pair, above the cap of {:.0} MiB; use fewer chunks (--chunks {})",
                l.name,
                args.chunks,
                bytes as f64 / (1u64 << 20) as f64,
                MAX_CHUNK_BYTES as f64 / (1u64 << 20) as f64,
                (MAX_CHUNK_BYTES / chunk_memory_bytes(c, c, 1)).max(1)
            );
        }
    }

    // The untrained baseline: each seed's net at initialisation, re-created from its seed and
    // checked bitwise (by digest) against the net its training started from.
    let mut untrained = Vec::new();
    if !args.no_untrained {
        for tn in &nets {
            let init = initial_net(&tn.config)?;
            if let Some(want) = &tn.init_digest {
                let got = state_digest(&init)?;
                if &got != want {
                    bail!(
                        "seed {}: the re-created initial net (digest {got}) differs from the one \
                         its training started from (digest {want}); was the checkpoint written \
                         by another version of spanmatch?",
                        tn.config.seed
                    );
                }
            }
            untrained.push(init);
        }
    }
    let untrained_verified = nets.iter().filter(|n| n.init_digest.is_some()).count();

    // 2. One pass over the test set: every pair, every layer; trained nets are 0..k, their
    // untrained starts k..2k.
    let layers = nets[0].net.layers().to_vec();
    let k = nets.len();
    let mut specs: Vec<(ComparisonKind, PairSpec)> = Vec::new();
    for i in 0..k {
        for j in i + 1..k {
            let spec = |a, b| PairSpec {
                a,
                b,
                shuffle_b: false,
            };
            specs.push((ComparisonKind::Pair, spec(i, j)));
            if !untrained.is_empty() {
                specs.push((ComparisonKind::Untrained, spec(k + i, k + j)));
            }
        }
    }
    specs.push((
        ComparisonKind::Null,
        PairSpec {
            a: 0,
            b: 1,
            shuffle_b: true,
        },
    ));
    let n_nets = k + untrained.len();
    let extract_bar = bar(test.len() as u64, "extracting");
    let mut sink = Sink {
        pairs: PairAccumulators::new(
            n_nets,
            layers.iter().map(|l| l.name.clone()).collect(),
            specs.iter().map(|(_, s)| *s).collect(),
        )
        .with_chunks(
            specs
                .iter()
                .map(|(kind, _)| matches!(kind, ComparisonKind::Pair | ComparisonKind::Untrained))
                .collect(),
            args.chunks,
            test.len() as u64,
            MAX_CHUNK_BYTES,
        )?,
        bar: extract_bar.clone(),
    };
    // The inputs each neuron of the first two trained nets responds to most, in the same pass.
    let mut tops = match (simple_eps, args.top_inputs) {
        (Some(_), k) if k > 0 => Some(TopInputs::new(k, &[0, 1])?),
        _ => None,
    };
    let refs: Vec<&spanmatch_train::net::Net> = nets
        .iter()
        .map(|n| &n.net)
        .chain(untrained.iter())
        .collect();
    eprintln!(
        "extracting {} layers of {} nets{} on {} test images ...",
        layers.len(),
        k,
        if untrained.is_empty() {
            ""
        } else {
            " and their untrained starts"
        },
        test.len()
    );
    let t0 = Instant::now();
    let evals = match tops.as_mut() {
        Some(t) => extract(
            &refs,
            &test,
            args.batch_size,
            None,
            &mut TeeSink(vec![&mut sink, t]),
        ),
        None => extract(&refs, &test, args.batch_size, None, &mut sink),
    }
    .context("extracting activations")?;
    extract_bar.finish_and_clear();
    let t_extract = t0.elapsed().as_secs_f64();
    let untrained_accuracy: Vec<f64> = evals[k..].iter().map(|e| e.accuracy).collect();
    for (summary, eval) in summaries.iter_mut().zip(&evals) {
        summary.test_accuracy = eval.accuracy;
        eprintln!(
            "net seed {}: test accuracy {:.2}%",
            summary.seed,
            100.0 * eval.accuracy
        );
    }
    let mut accs = sink.pairs.into_accumulators();

    // 3. Analysis of every (comparison, layer), with the engine's one analysis.
    // The trained pairs: every control, the simple matches and the profile curves.
    let pair_opts = Options {
        eps: args.eps.clone(),
        dead: if args.dead == "match" {
            Dead::Match
        } else {
            Dead::Drop
        },
        measures,
        center: !args.no_center,
        null: (args.null_draws > 0).then_some(NullKind::Rotate),
        null_draws: args.null_draws,
        bootstrap: Some(args.bootstrap),
        chunks: args.chunks,
        seed: args.bootstrap_seed,
        simple: simple_eps,
        top_inputs: if tops.is_some() { args.top_inputs } else { 0 },
        curve: true,
        ..Options::default()
    };
    pair_opts.validate_named(&|f| match f {
        "seed" => "--bootstrap-seed".to_string(),
        f => format!("--{}", f.replace('_', "-")),
    })?;
    // The untrained pairs: the same, without simple matches and null (their profile curves kept).
    let untrained_opts = Options {
        curve: true,
        ..pair_opts.for_baseline()
    };
    // The self-check counts dead neurons as matched (the literal definition): a net against
    // itself must then give mms = 1 at every ε in every layer, dead neurons or not.
    let plain = Options {
        center: false,
        null: None,
        bootstrap: None,
        simple: None,
        ..pair_opts.clone()
    };
    let self_opts = Options {
        dead: Dead::Match,
        ..plain.clone()
    };
    let t0 = Instant::now();
    let pb = bar((specs.len() * layers.len()) as u64, "matching");
    let mut comparisons = Vec::new();
    let mut self_done = vec![false; k];
    let mut layer_summaries = Vec::new();
    for (pi, (kind, spec)) in specs.iter().enumerate() {
        let mut results = Vec::new();
        let mut self_results: Vec<(usize, Vec<_>)> = Vec::new();
        for (li, layer) in layers.iter().enumerate() {
            let Some(acc) = accs[pi][li].take() else {
                bail!("layer {}: no activations were received", layer.name);
            };
            let (stats, chunked) = acc.finish();
            pb.set_message(layer.name.clone());
            if pi == 0 {
                layer_summaries.push(LayerSummary {
                    name: layer.name.clone(),
                    index: layer.index,
                    kind: match layer.kind {
                        LayerKind::Conv => "conv".into(),
                        LayerKind::Fc => "fc".into(),
                    },
                    neurons: layer.channels(),
                    rows: stats.rows,
                });
            }
            let mut progress = BarProgress {
                bar: &pb,
                layer: &layer.name,
            };
            if *kind == ComparisonKind::Pair {
                for (net, side) in [(spec.a, Side::A), (spec.b, Side::B)] {
                    if !self_done[net] {
                        let r = analyse_pair(
                            PairInput::new(LayerLabel::named(&layer.name), stats.self_pair(side)),
                            &self_opts,
                            &mut progress,
                        )?;
                        match self_results.iter_mut().find(|(n, _)| *n == net) {
                            Some((_, v)) => v.push(r),
                            None => self_results.push((net, vec![r])),
                        }
                    }
                }
            }
            let opts = match kind {
                ComparisonKind::Pair => &pair_opts,
                ComparisonKind::Untrained => &untrained_opts,
                _ => &plain,
            };
            let input = PairInput {
                label: LayerLabel::named(&layer.name),
                stats,
                chunks: chunked.filter(|_| opts.bootstrap.is_some()),
                baseline: None,
            };
            results.push(analyse_pair(input, opts, &mut progress)?);
            pb.inc(1);
        }
        for (net, res) in self_results {
            self_done[net] = true;
            comparisons.push(Comparison {
                seed_a: Some(args.seeds[net]),
                seed_b: Some(args.seeds[net]),
                ..Comparison::new(ComparisonKind::SelfCheck, res)
            });
        }
        comparisons.push(Comparison {
            seed_a: Some(args.seeds[spec.a % k]),
            seed_b: Some(args.seeds[spec.b % k]),
            ..Comparison::new(*kind, results)
        });
    }
    // Each trained pair's layers get their untrained pair's summary and a verdict.
    link_untrained(&mut comparisons, &pair_opts);
    pb.finish_and_clear();
    let t_match = t0.elapsed().as_secs_f64();

    // What matched neurons respond to: the first trained pair (nets 0 and 1).
    let neuron_views = match &tops {
        Some(tops) => {
            let pair = comparisons
                .iter()
                .find(|c| c.kind == ComparisonKind::Pair)
                .context("no trained seed pair to show")?;
            Some(neuron_views(
                pair,
                tops,
                &test,
                args.simple,
                args.bootstrap_seed,
            )?)
        }
        None => None,
    };

    // 4. Results and report.
    let mut results = Results::new(Front::Reproduce, "net A", "net B", &pair_opts);
    results.provenance.seeds.nets = args.seeds.clone();
    results.config = Some(serde_json::json!({
        "dataset": args.dataset.to_string(),
        "arch": args.arch,
        "width": args.width,
        "hidden": args.hidden,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "train_limit": (args.train_limit > 0).then_some(args.train_limit),
        "test_images": test.len(),
        "batch_size": args.batch_size,
        "dead_policy": args.dead,
        "sine_tolerance": spanmatch_core::tolerance::SINE_TOL,
        "null": "net of the first seed against the second seed's net with the images rotated by one within each batch",
        "untrained": if untrained.is_empty() {
            serde_json::Value::from("skipped (--no-untrained)")
        } else {
            serde_json::Value::from(format!(
                "the same seeds' nets at initialisation, compared pair by pair in the same pass; \
                 {untrained_verified} of {k} re-created initial nets verified bitwise against \
                 the digest recorded when their training started"
            ))
        },
        "untrained_test_accuracy": untrained_accuracy,
        "chunks": args.chunks,
        "bootstrap_resamples": args.bootstrap,
        "bootstrap_seed": args.bootstrap_seed,
        "null_draws": args.null_draws,
        "center": !args.no_center,
        "simple_eps": simple_eps,
        "top_inputs": if neuron_views.is_some() { args.top_inputs } else { 0 },
    }));
    results.nets = summaries;
    results.layers = layer_summaries;
    results.comparisons = comparisons;
    results.timings = Some(serde_json::json!({
        "train_seconds": t_train,
        "extract_and_accumulate_seconds": t_extract,
        "match_seconds": t_match,
        "total_seconds": started.elapsed().as_secs_f64(),
    }));
    results.peak_memory_mb = peak_memory_mb();
    results.neuron_views = neuron_views;
    let path = args.out.join("results.json");
    write_results(&results, &path)?;
    let files = spanmatch_report::render(&results, &args.out).context("rendering the report")?;
    eprintln!(
        "done in {:.0} s (train {:.0} s, extract+accumulate {:.0} s, match and controls {:.0} s); peak memory {:.0} MiB",
        started.elapsed().as_secs_f64(),
        t_train,
        t_extract,
        t_match,
        peak_memory_mb().unwrap_or(f64::NAN)
    );
    println!("results: {}", path.display());
    for f in files {
        println!("report:  {}", f.display());
    }
    Ok(())
}

/// The views of what matched neurons respond to for one trained pair (`pair`, nets 0 and 1 of
/// `tops`), with the referenced test images as PNGs.
fn neuron_views(
    pair: &Comparison,
    tops: &TopInputs,
    test: &Dataset,
    eps: f64,
    seed: u64,
) -> Result<NeuronViews> {
    let opts = ViewOptions {
        seed,
        ..ViewOptions::default()
    };
    let info = InputInfo {
        image_shape: test.shape,
        class_names: test
            .kind
            .class_names()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        response: TopInputs::RESPONSE.to_string(),
    };
    let size = test.image_len();
    views::neuron_views(
        pair,
        eps,
        tops.k(),
        &opts,
        info,
        |net_a, layer, n| {
            tops.top(usize::from(!net_a), layer, n)
                .unwrap_or(&[])
                .iter()
                .map(|t| (f64::from(t.value), t.image))
                .collect()
        },
        |index| {
            let pixels = test
                .images
                .get(index * size..(index + 1) * size)
                .with_context(|| format!("test image {index} out of range"))?;
            Ok((
                usize::from(test.labels[index]),
                encode_png_base64(pixels, test.shape)?,
            ))
        },
    )
}

/// The engine's progress during the analysis: the simple-match search on the bar's message.
struct BarProgress<'a> {
    bar: &'a ProgressBar,
    layer: &'a str,
}

impl Progress for BarProgress<'_> {
    fn simple(&mut self, done: usize, total: usize) -> bool {
        self.bar.set_message(format!(
            "{}: simple matches, neuron {done}/{total}",
            self.layer
        ));
        true
    }

    fn warn(&mut self, message: &str) {
        self.bar.println(format!("warning: {message}"));
    }
}

/// Forwards the extraction's batches to the engine's pair accumulators, with a progress bar in
/// images.
struct Sink {
    pairs: PairAccumulators,
    bar: ProgressBar,
}

impl ActivationSink for Sink {
    fn batch(
        &mut self,
        net: usize,
        layer: &LayerInfo,
        shape: &[usize],
        data: &[f32],
    ) -> Result<()> {
        let before = self.pairs.inputs_done();
        self.pairs.batch(net, &layer.name, shape, data)?;
        self.bar.inc(self.pairs.inputs_done() - before);
        Ok(())
    }
}
