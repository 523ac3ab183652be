using System.Text.Json;
using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Training;

/// <summary>
/// LoRA fine-tuning, LitGPT's <c>finetune_lora</c> loop: micro-batches with gradient accumulation, warmup + cosine,
/// AdamW, optional clipping, periodic validation and checkpoints, all into one run folder (see <see cref="RunFolder"/>).
/// This is the one entry point <c>Start-LoraFinetune</c> calls.
/// </summary>
/// <remarks>
/// <para>
/// Only the adapter's parameters train; the base model keeps its precision (BF16 models keep BF16 weights while
/// PEFT-style adapters stay FP32). Each micro-batch's loss is the mean over its label tokens, divided by the number of
/// accumulation steps before backward, as LitGPT does.
/// </para>
/// <para>
/// Determinism: the batch order is a function of (seed, epoch) (<see cref="BatchSampler"/>), and torch's global generator
/// is reseeded from (seed, micro-batch index) before every micro-batch, so the dropout masks depend only on the position
/// in the run. A run interrupted and resumed from a checkpoint therefore ends with the same adapter, bit for bit on
/// the CPU, as an uninterrupted one. Reseeding the global generator affects other users of it on the same process.
/// </para>
/// <para>
/// Runs synchronously on the calling thread (TorchSharp's dispose scopes are thread-static); progress is reported
/// synchronously after each step, so pass an <see cref="IProgress{T}"/> that does not post elsewhere. Cancellation is
/// checked after each step: the run saves a checkpoint and returns a <see cref="StopReason.Cancelled"/> result.
/// </para>
/// </remarks>
public static class LoraTrainer
{
    /// <summary>Independent stream of <see cref="DeterministicRandom"/> for the dropout seeds.</summary>
    const ulong DropoutStream = 101;

    /// <summary>Trains the model's active adapter on <paramref name="data"/> into a new run folder.</summary>
    /// <exception cref="ArgumentException">Invalid options, or data that does not fit the model.</exception>
    /// <exception cref="InvalidOperationException">The model has no single active, trainable adapter.</exception>
    /// <exception cref="IOException">The output folder already holds a run.</exception>
    /// <exception cref="TrainingDivergedException">The loss or gradients became NaN/∞.</exception>
    public static TrainingResult Run(LoraModel model, PreparedData data, TrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var adapterName = ResolveAdapter(model, options.AdapterName);
        CheckData(model, data);

        var sampler = new BatchSampler(data.Train.Lengths, options.MicroBatchSize, options.Seed, options.BatchOrdering);
        long maxSteps = options.MaxSteps ?? Math.Max(1, (long)options.Epochs * sampler.BatchesPerEpoch / options.AccumulationSteps);
        var folder = new RunFolder(options.OutputDirectory);
        folder.CreateNew(Manifest(model, data, options with { OutputDirectory = folder.Root, AdapterName = adapterName }, adapterName, maxSteps, sampler));
        var state = new TrainerState
        {
            MaxSteps = maxSteps,
            Seed = options.Seed,
            BatchesPerEpoch = sampler.BatchesPerEpoch,
            MicroBatchSize = options.MicroBatchSize,
            DataFingerprint = data.Fingerprint,
            AdapterName = adapterName,
        };
        return new Session(model, data, options, folder, state, sampler, progress, cancellationToken).Train(optimizerState: null);
    }

    /// <summary>
    /// Continues the run in <paramref name="runFolder"/> from its latest checkpoint with the options in its run.json.
    /// The adapter is loaded from the checkpoint into <paramref name="model"/>, which must be the same base model
    /// without that adapter; <paramref name="data"/> must have the run's data fingerprint.
    /// </summary>
    /// <exception cref="FileNotFoundException">No run.json, or no checkpoint to resume from.</exception>
    /// <exception cref="InvalidOperationException">The model already has the adapter, or the run already finished.</exception>
    /// <exception cref="ArgumentException">The data differs from the run's.</exception>
    public static TrainingResult Resume(string runFolder, LoraModel model, PreparedData data,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(runFolder);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        var folder = new RunFolder(runFolder);
        var manifest = folder.ReadManifest();
        var options = manifest.Options with { OutputDirectory = folder.Root };
        if (manifest.Model.Quantization != model.Quantization?.Format)
            throw new InvalidOperationException($"The run '{folder.Root}' trained on a base model {(manifest.Model.Quantization is { } q ? "quantized as " + q : "without quantization")}, but this model is {(model.Quantization is { } m ? "quantized as " + m.Format : "not quantized")}; import the model the same way to resume.");
        // Written when the run completed: the last checkpoint may be steps behind the end.
        string completedFile = Path.Combine(folder.Root, RunFolder.StateFile);
        var completed = File.Exists(completedFile) ? JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(completedFile), RunFolder.Json) : null;
        InvalidOperationException AlreadyDone(long steps) =>
            new($"The run '{folder.Root}' already did all {steps} steps; its adapter is in {folder.Final}.");
        var checkpoint = folder.LatestCheckpoint();
        if (checkpoint is null && completed is not null) throw AlreadyDone(completed.MaxSteps);
        if (checkpoint is null)
            throw new FileNotFoundException($"The run '{folder.Root}' has no checkpoint to resume from ({RunFolder.CheckpointsFolder}/{RunFolder.LatestFile} is missing).");
        var state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(Path.Combine(checkpoint, RunFolder.StateFile)), RunFolder.Json)
            ?? throw new InvalidDataException($"'{checkpoint}' has an empty {RunFolder.StateFile}.");
        if (data.Fingerprint != state.DataFingerprint)
            throw new ArgumentException($"The data differs from the data the run '{folder.Root}' was started with (fingerprint {data.Fingerprint[..12]}… vs {state.DataFingerprint[..12]}…); prepare the same dataset with the same options.", nameof(data));
        if (state.Step >= state.MaxSteps || completed is not null) throw AlreadyDone(state.MaxSteps);
        if (model.Adapters.Names.Contains(state.AdapterName))
            throw new InvalidOperationException($"The model already has an adapter '{state.AdapterName}'; resume on a model without it (it is loaded from the checkpoint), e.g. a freshly imported one.");
        CheckData(model, data);

        model.Adapters.Load(RunFolder.AdapterPath(Path.Combine(checkpoint, RunFolder.AdapterFolder), state.AdapterName), state.AdapterName, trainable: true);
        model.Adapters.SetActive(state.AdapterName);
        var sampler = new BatchSampler(data.Train.Lengths, options.MicroBatchSize, options.Seed, options.BatchOrdering);
        if (sampler.BatchesPerEpoch != state.BatchesPerEpoch)
            throw new InvalidDataException($"'{checkpoint}' was written with {state.BatchesPerEpoch} batches per epoch, the data gives {sampler.BatchesPerEpoch}.");
        folder.TruncateMetrics(state.Step);
        return new Session(model, data, options with { AdapterName = state.AdapterName }, folder, state, sampler, progress, cancellationToken)
            .Train(optimizerState: Path.Combine(checkpoint, RunFolder.OptimizerFile), resumedFrom: checkpoint);
    }

    /// <summary>The adapter to train: the named one, or the only active one; it must be active alone and trainable.</summary>
    static string ResolveAdapter(LoraModel model, string? name)
    {
        var set = model.Adapters;
        if (set.Names.Count == 0)
            throw new InvalidOperationException($"The model '{model.Name}' has no adapter to train; add one first (Add-LoraAdapter / LoraAdapterSet.Add).");
        if (set.IsMerged) throw new InvalidOperationException("The adapters are merged into the base weights; unmerge them before training.");
        if (name is null)
        {
            if (set.ActiveAdapters.Count != 1)
                throw new InvalidOperationException($"The model has {set.ActiveAdapters.Count} active adapters ({string.Join(", ", set.ActiveAdapters)}); name the one to train.");
            name = set.ActiveAdapters[0];
        }
        var info = set.Get(name);
        if (!info.IsTrainable)
            throw new InvalidOperationException($"The adapter '{name}' was loaded for inference; load it with trainable = true to train it.");
        if (set.ActiveAdapters.Count != 1 || set.ActiveAdapters[0] != name) set.SetActive(name);
        if (set.AdaptersDisabled) set.Enable();
        return name;
    }

    static void CheckData(LoraModel model, PreparedData data)
    {
        if (data.Train.Count == 0) throw new ArgumentException("There are no training examples.", nameof(data));
        if (data.Train.NoTargetCount == data.Train.Count)
            throw new ArgumentException($"None of the {data.Train.Count} training examples has a token to learn: every response was cut off by the maximum " +
                "sequence length (or is empty). Raise MaxSeqLength, or do not mask the prompt.", nameof(data));
        bool classification = data.Labels is not null;
        if (classification && model.Head != ModelHeadKind.SequenceClassification)
            throw new ArgumentException($"The data is for classification ({data.Labels!.Count} labels) but '{model.Name}' is a {model.Head} model; import it with a classification head.", nameof(data));
        if (!classification && model.Head != ModelHeadKind.CausalLM)
            throw new ArgumentException($"The data is for language modelling but '{model.Name}' is a {model.Head} model; give classification data or a causal LM.", nameof(data));
    }

    static RunManifest Manifest(LoraModel model, PreparedData data, TrainingOptions options, string adapterName, long maxSteps, BatchSampler sampler)
    {
        var adapter = model.Adapters.Get(adapterName);
        var counts = model.Adapters.CountParameters();
        return new RunManifest(
            RunFolder.VersionOf(typeof(LoraTrainer).Assembly), RunFolder.VersionOf(typeof(torch).Assembly), DateTimeOffset.UtcNow, options,
            new RunModelSummary(model.Path, model.Name, model.Architecture, model.Precision.ToString(), model.Network.Device.ToString(),
                model.Layers, model.HiddenSize, model.VocabSize, counts.Total, counts.Trainable, model.Quantization?.Format),
            new RunAdapterSummary(adapterName, adapter.Config.Rank, adapter.Config.Alpha, adapter.Config.Dropout, adapter.Config.UseDora,
                adapter.Config.UseRsLora, adapter.Targets.Select(t => t.Path).ToList()),
            new RunDataSummary(data.Fingerprint, data.Format.ToString(), data.Train.Count, data.Validation?.Count ?? 0, data.Train.TotalTokens),
            options.Seed, maxSteps, options.AccumulationSteps, sampler.BatchesPerEpoch);
    }

    /// <summary>The seed of micro-batch <paramref name="microBatch"/>'s dropout masks.</summary>
    internal static long DropoutSeed(long seed, long microBatch) =>
        (long)(new DeterministicRandom(seed, DropoutStream, (ulong)microBatch).NextUInt64() >> 1);

    /// <summary>One training session over a run folder (a new run, or a resumed one).</summary>
    sealed class Session(LoraModel model, PreparedData data, TrainingOptions options, RunFolder folder, TrainerState state,
        BatchSampler sampler, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        readonly TransformerModel _network = model.Network;
        readonly System.Diagnostics.Stopwatch _clock = new();
        readonly double _elapsedBefore = state.ElapsedSeconds;
        readonly long _stepsBefore = state.Step;
        string? _lastCheckpoint;

        double Elapsed => _elapsedBefore + _clock.Elapsed.TotalSeconds;

        CollateOptions Collate => new() { Device = _network.Device, PadToMultipleOf = options.PadToMultipleOf, IgnoreIndex = Losses.IgnoreIndex };

        public TrainingResult Train(string? optimizerState, string? resumedFrom = null)
        {
            _lastCheckpoint = resumedFrom;
            var parameters = model.Adapters.TrainableNamedParameters();
            using var optimizer = Optimizer.Create(parameters, options.Optimizer);
            if (optimizerState is not null) optimizer.Load(optimizerState);
            var stop = StopReason.Completed;
            _clock.Start();
            bool wasTraining = _network.training, wasCheckpointing = _network.GradientCheckpointing;
            _network.train();
            try
            {
                if (options.GradientCheckpointing) _network.GradientCheckpointing = true;
                if (options.InitialValidation && state.Step == 0 && state.InitialValidation is null)
                    state.InitialValidation = Validate();
                while (state.Step < state.MaxSteps)
                {
                    var (loss, gradNorm, lr, tokens) = Step(optimizer, parameters.Select(p => p.Parameter).ToList());
                    state.Step++;
                    state.Tokens += tokens;
                    state.LastTrainLoss = loss;
                    state.BestTrainLoss = Math.Min(state.BestTrainLoss ?? double.PositiveInfinity, loss);

                    ValidationMetrics? validation = null;
                    bool last = state.Step == state.MaxSteps;
                    if ((options.EvalInterval > 0 && state.Step % options.EvalInterval == 0) || (last && options.EvaluateAtEnd))
                        validation = Validate();
                    if (validation is not null)
                    {
                        state.LastValidation = validation;
                        state.BestValidationLoss = Math.Min(state.BestValidationLoss ?? double.PositiveInfinity, validation.Loss);
                    }
                    state.ElapsedSeconds = Elapsed;
                    WriteMetrics(loss, lr, gradNorm, validation);
                    bool saved = false;
                    if (options.SaveInterval > 0 && state.Step % options.SaveInterval == 0)
                    {
                        SaveCheckpoint(optimizer);
                        saved = true;
                    }
                    Report(loss, lr, gradNorm, validation);

                    if (last) break;
                    if (cancellationToken.IsCancellationRequested) stop = StopReason.Cancelled;
                    else if (options.MaxTime is { } max && Elapsed >= max.TotalSeconds) stop = StopReason.MaxTime;
                    if (stop != StopReason.Completed)
                    {
                        if (!saved) SaveCheckpoint(optimizer);
                        break;
                    }
                }
            }
            finally
            {
                _clock.Stop();
                if (!wasTraining) _network.eval();
                _network.GradientCheckpointing = wasCheckpointing;
            }

            string adapterPath;
            if (stop == StopReason.Cancelled)
            {
                adapterPath = RunFolder.AdapterPath(Path.Combine(_lastCheckpoint!, RunFolder.AdapterFolder), state.AdapterName);
            }
            else
            {
                model.Adapters.Save(folder.Final, state.AdapterName, force: true);
                adapterPath = RunFolder.AdapterPath(folder.Final, state.AdapterName);
                // The last checkpoint may be steps behind the end; this marks the run finished so Resume refuses it.
                if (stop == StopReason.Completed)
                    File.WriteAllText(Path.Combine(folder.Root, RunFolder.StateFile), JsonSerializer.Serialize(state, RunFolder.Json));
            }
            var counts = model.Adapters.CountParameters();
            return new TrainingResult(stop, state.Step, state.MaxSteps, Epochs, state.Tokens, TimeSpan.FromSeconds(state.ElapsedSeconds),
                TokensPerSecond, state.LastTrainLoss, state.BestTrainLoss, state.LastValidation?.Loss, state.BestValidationLoss,
                state.LastValidation, RuntimeInspector.ProcessMemory().Peak, counts.Trainable, counts.Total, adapterPath, folder.Root, _lastCheckpoint)
            {
                InitialValidation = state.InitialValidation,
                TruncatedExamples = data.Train.TruncatedCount,
            };
        }

        double Epochs => (double)state.MicroBatches / state.BatchesPerEpoch;

        double TokensPerSecond => state.ElapsedSeconds > 0 ? state.Tokens / state.ElapsedSeconds : 0;

        /// <summary>
        /// The attention mask the forward needs. The collator pads on the right, so in a causal LM no real token ever
        /// attends to padding (it comes after it) and the padding's own outputs meet only ignored labels: the loss and
        /// every gradient are the same without the mask. Without it, attention uses the kernel's built-in causal mask
        /// (SDPA's flash path) instead of building and reading an additive [B, 1, T, T] tensor per step. Classification
        /// heads read the mask to find each row's last token, and encoders attend both ways, so they keep it.
        /// </summary>
        Tensor? ForwardMask(TrainingBatch batch) =>
            model.Head == ModelHeadKind.CausalLM && _network.Config.IsDecoder ? null : batch.AttentionMask;

        /// <summary>One optimizer step over <see cref="TrainingOptions.AccumulationSteps"/> micro-batches.</summary>
        (double Loss, double GradNorm, double LearningRate, long Tokens) Step(Optimizer optimizer, IReadOnlyList<TorchSharp.Modules.Parameter> parameters)
        {
            double lr = options.Schedule.At(state.Step, state.MaxSteps, options.Optimizer.LearningRate);
            optimizer.LearningRate = lr;
            optimizer.ZeroGrad();
            int accumulation = options.AccumulationSteps;
            double loss = 0;
            long tokens = 0;
            for (int k = 0; k < accumulation; k++)
            {
                using var scope = NewDisposeScope();
                var (epoch, index) = sampler.Locate(state.MicroBatches);
                using var batch = BatchCollator.Collate(sampler.Batch(epoch, index).Select(i => data.Train[i]).ToList(), Collate);
                torch.manual_seed(DropoutSeed(state.Seed, state.MicroBatches));
                var output = _network.Forward(batch.InputIds, ForwardMask(batch), tokenTypeIds: batch.TokenTypeIds);
                var microLoss = _network.ComputeLoss(output, batch.Labels);
                double value = microLoss.item<float>();
                if (!double.IsFinite(value)) throw new TrainingDivergedException(state.Step + 1, "loss", value, _lastCheckpoint);
                // LitGPT: loss / accumulation steps, so the accumulated gradient is that of the mean over micro-batches.
                (microLoss / accumulation).backward();
                loss += value / accumulation;
                tokens += batch.Padding.RealTokens;
                state.MicroBatches++;
            }
            double gradNorm = GradientClipping.ClipByGlobalNorm(parameters, options.MaxGradNorm);
            if (!double.IsFinite(gradNorm)) throw new TrainingDivergedException(state.Step + 1, "gradient norm", gradNorm, _lastCheckpoint);
            optimizer.Step();
            return (loss, gradNorm, lr, tokens);
        }

        /// <summary>Mean loss over every validation label token (and accuracy for classification), in eval mode.</summary>
        ValidationMetrics? Validate()
        {
            if (data.Validation is not { Count: > 0 } validation) return null;
            _network.eval();
            try
            {
                using var noGrad = no_grad();
                double lossSum = 0;
                long tokens = 0, correct = 0;
                int examples = 0;
                var batches = BatchSampler.ForEvaluation(validation.Lengths, options.EvalBatchSize ?? options.MicroBatchSize);
                foreach (var indices in batches.Take(options.EvalMaxBatches ?? int.MaxValue))
                {
                    using var scope = NewDisposeScope();
                    using var batch = BatchCollator.Collate(indices.Select(i => validation[i]).ToList(), Collate);
                    var output = _network.Forward(batch.InputIds, ForwardMask(batch), tokenTypeIds: batch.TokenTypeIds);
                    if (batch.LabelTokens == 0) continue;
                    // Weight each batch's mean by its label tokens, so the result is the mean over all tokens.
                    lossSum += _network.ComputeLoss(output, batch.Labels).item<float>() * batch.LabelTokens;
                    tokens += batch.LabelTokens;
                    examples += batch.BatchSize;
                    if (data.Labels is not null)
                        correct += output.Logits!.argmax(-1).eq(batch.Labels.to(output.Logits.device)).sum().item<long>();
                }
                if (tokens == 0) return null;
                double loss = lossSum / tokens;
                return new ValidationMetrics(loss, Math.Exp(loss), data.Labels is null ? null : (double)correct / examples, examples, tokens);
            }
            finally
            {
                _network.train();
            }
        }

        void SaveCheckpoint(Optimizer optimizer)
        {
            state.ElapsedSeconds = Elapsed;
            _lastCheckpoint = folder.WriteCheckpoint(state.Step, temp =>
            {
                model.Adapters.Save(Path.Combine(temp, RunFolder.AdapterFolder), state.AdapterName);
                optimizer.Save(Path.Combine(temp, RunFolder.OptimizerFile));
                File.WriteAllText(Path.Combine(temp, RunFolder.StateFile), JsonSerializer.Serialize(state, RunFolder.Json));
            }, options.KeepCheckpoints);
        }

        void WriteMetrics(double loss, double lr, double gradNorm, ValidationMetrics? validation)
        {
            var line = new Dictionary<string, object?>
            {
                ["step"] = state.Step,
                ["epoch"] = Epochs,
                ["loss"] = loss,
                ["lr"] = lr,
                ["grad_norm"] = gradNorm,
                ["tokens"] = state.Tokens,
                ["tokens_per_second"] = TokensPerSecond,
                ["elapsed_s"] = state.ElapsedSeconds,
            };
            if (validation is not null)
            {
                line["val_loss"] = validation.Loss;
                line["val_perplexity"] = validation.Perplexity;
                if (validation.Accuracy is { } accuracy) line["val_accuracy"] = accuracy;
            }
            folder.AppendMetrics(line);
        }

        void Report(double loss, double lr, double gradNorm, ValidationMetrics? validation)
        {
            if (progress is null) return;
            long doneHere = state.Step - _stepsBefore;
            double sessionSeconds = _clock.Elapsed.TotalSeconds;
            TimeSpan? remaining = doneHere > 0 ? TimeSpan.FromSeconds(sessionSeconds / doneHere * (state.MaxSteps - state.Step)) : null;
            progress.Report(new TrainingProgress(state.Step, state.MaxSteps, Epochs, loss, lr, gradNorm, state.Tokens, TokensPerSecond,
                TimeSpan.FromSeconds(state.ElapsedSeconds), remaining, validation));
        }
    }
}
