using LoraPS.Checkpoints;
using LoraPS.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>Named tensors to load from: a checkpoint on disk, or tensors in memory.</summary>
internal interface IWeightSource
{
    IReadOnlyCollection<string> Names { get; }
    long[] ShapeOf(string name);
    /// <summary>A CPU tensor in the stored dtype. The caller disposes it.</summary>
    Tensor Read(string name);
}

/// <summary>A <see cref="CheckpointReader"/> seen as a weight source.</summary>
internal sealed class CheckpointWeights : IWeightSource
{
    private readonly CheckpointReader _reader;
    public CheckpointWeights(CheckpointReader reader) => _reader = reader;
    public IReadOnlyCollection<string> Names => _reader.TensorNames;
    public long[] ShapeOf(string name) => _reader.Describe(name).Shape;
    public Tensor Read(string name) => _reader.ReadTensor(name);
}

/// <summary>
/// Loads Hugging Face model directories (config.json + safetensors) into LoraPS models, strictly: every weight the
/// model needs must be present with the right shape, and everything else is accounted for in a <see cref="LoadReport"/>.
/// </summary>
/// <remarks>
/// The model is first built on the meta device (no memory), then each parameter is replaced by its checkpoint tensor
/// converted to the requested dtype and device, one tensor at a time — peak memory is the model plus one tensor.
/// Key renames, ignored buffers and transposes come from <see cref="ArchitectureMapping"/>.
/// </remarks>
public static class ModelLoader
{
    /// <summary>
    /// Loads the model in <paramref name="directory"/>: <c>config.json</c> plus <c>model.safetensors</c> or a sharded
    /// <c>model.safetensors.index.json</c>.
    /// </summary>
    /// <exception cref="ModelConfigException">config.json is missing, invalid, or describes an unsupported model.</exception>
    /// <exception cref="ModelLoadException">A required weight is missing or has the wrong shape.</exception>
    /// <exception cref="FileNotFoundException">The directory or its weights do not exist.</exception>
    public static LoadedModel Load(string directory, ModelLoadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var full = Path.GetFullPath(directory);
        if (!Directory.Exists(full))
            throw new DirectoryNotFoundException($"The model directory '{full}' does not exist.");
        var config = ModelConfig.Load(full);
        using var reader = CheckpointReader.Open(full);
        return Load(config, new CheckpointWeights(reader), options ?? new ModelLoadOptions(), full);
    }

    internal static LoadedModel Load(ModelConfig config, IWeightSource source, ModelLoadOptions options, string origin)
    {
        if (options.NumLabels is { } labels) {
            if (labels <= 0) throw new ArgumentOutOfRangeException(nameof(options), labels, "NumLabels must be positive.");
            config = config with { NumLabels = labels };
        }
        if (options.Quantization is { } quantization) {
            quantization.Validate();
            if (options.RequiresGrad)
                throw new ArgumentException("Quantized weights are frozen; RequiresGrad cannot be combined with Quantization.", nameof(options));
            ThrowIfAlreadyQuantized(source, origin);
        }
        var head = options.Head ?? ModelFactory.DefaultHead(config);
        var model = ModelFactory.Create(config, head, torch.META, options.DType, options.Attention);
        var quantized = new Dictionary<string, QuantizedTensor>(StringComparer.Ordinal);
        try {
            var plan = Plan(model, source, origin);
            var placeholders = new List<Parameter>();
            var quantizeWeights = options.Quantization is { } q
                ? ModelQuantizer.SelectTargets(model, q).Where(p => plan.SourceFor.ContainsKey(p + ".weight")).ToHashSet(StringComparer.Ordinal)
                : [];
            var report = Fill(model, source, plan, options, placeholders, quantizeWeights, quantized);
            if (quantized.Count > 0) {
                var workspace = new DequantizationWorkspace();
                foreach (var path in quantized.Keys.ToList()) {
                    var weight = quantized[path];
                    quantized.Remove(path);
                    ModelQuantizer.Install(model, path, weight, options.DType, workspace);
                }
                report = report with { Quantized = quantizeWeights.Order(StringComparer.Ordinal).ToList() };
            }
            model.TieWeights();
            // Only now, with nothing pointing at them, can the meta placeholders go.
            foreach (var p in placeholders.Distinct(ReferenceEqualityComparer.Instance)) ((Parameter)p!).Dispose();
            var stillMeta = model.named_parameters().Where(p => p.parameter.device_type == DeviceType.META).Select(p => p.name).ToList();
            if (stillMeta.Count > 0)
                throw new InvalidOperationException($"Internal error: after loading '{origin}', parameters were left unfilled: {string.Join(", ", stillMeta)}.");
            // transformers' from_pretrained returns the model in eval mode (dropout off).
            model.eval();
            LoraPS.Runtime.NativeHeap.Trim();
            return new LoadedModel(model, report, origin);
        } catch {
            foreach (var weight in quantized.Values) weight.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>bitsandbytes' serialized 4-bit and 8-bit weights (see <see cref="BitsAndBytesStateDict"/>) give a checkpoint away.</summary>
    private static void ThrowIfAlreadyQuantized(IWeightSource source, string origin)
    {
        var marker = source.Names.FirstOrDefault(n => n.Contains(".quant_state.bitsandbytes__", StringComparison.Ordinal)
            || n.EndsWith(".weight.absmax", StringComparison.Ordinal) || n.EndsWith(".SCB", StringComparison.Ordinal));
        if (marker is not null)
            throw new AlreadyQuantizedException($"'{origin}' is already quantized (bitsandbytes weights such as '{marker}'); it cannot be quantized again. Quantize the original full-precision checkpoint instead.");
    }

    /// <summary>Which checkpoint tensor fills which model parameter, decided from names and shapes only.</summary>
    private sealed record LoadPlan(
        Dictionary<string, string> SourceFor,        // model key → checkpoint key
        List<string> Fresh, List<string> Unexpected, List<string> Ignored, List<string> Transposed, List<KeyRename> Renamed);

    private static LoadPlan Plan(TransformerModel model, IWeightSource source, string origin)
    {
        var mapping = ArchitectureMapping.For(model.Config.Architecture);
        var tied = model.TiedParameters.Select(t => t.Tied).ToHashSet();
        // A tied parameter is the embedding itself; the loader fills the embedding and TieWeights re-points the head.
        var expected = model.state_dict().Where(kv => !tied.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        var prefix = mapping.BasePrefix + ".";
        var modelHasPrefix = expected.Keys.Any(k => k.StartsWith(prefix, StringComparison.Ordinal));
        var fileHasPrefix = source.Names.Any(n => !mapping.IsIgnored(n) && mapping.Rename(n).StartsWith(prefix, StringComparison.Ordinal));

        var plan = new LoadPlan(new(), new(), new(), new(), new(), new());
        foreach (var name in source.Names.OrderBy(n => n, StringComparer.Ordinal)) {
            if (mapping.IsIgnored(name)) { plan.Ignored.Add(name); continue; }
            var key = mapping.Rename(name);
            if (modelHasPrefix && !fileHasPrefix) {
                // A checkpoint of the bare body (official gpt2, sentence-transformers BERT) loaded into a head model.
                key = prefix + key;
            } else if (!modelHasPrefix && fileHasPrefix && key.StartsWith(prefix, StringComparison.Ordinal)) {
                // A head model's checkpoint loaded as the bare body: its head keys stay unexpected.
                key = key[prefix.Length..];
            }
            if (expected.ContainsKey(key)) {
                plan.SourceFor[key] = name;
                if (key != name) plan.Renamed.Add(new KeyRename(name, key));
            } else if (tied.Contains(key)) {
                plan.Ignored.Add(name);   // a stored copy of a tied weight; the embedding provides it
            } else {
                plan.Unexpected.Add(name);
            }
        }

        var missing = new List<string>();
        var mismatched = new List<string>();
        foreach (var (key, shape) in expected) {
            if (plan.SourceFor.TryGetValue(key, out var name)) {
                var transposed = mapping.IsTransposed(StripPrefix(key, prefix));
                var want = transposed ? Enumerable.Reverse(shape).ToArray() : shape;
                var found = source.ShapeOf(name);
                if (!want.SequenceEqual(found))
                    mismatched.Add($"'{key}': the model expects {Shape(want)}{(transposed ? " (stored transposed, in×out)" : "")} from its config, the checkpoint has {Shape(found)}" +
                                   (name != key ? $" under '{name}'" : ""));
                if (transposed) plan.Transposed.Add(key);
            } else if (mapping.IsTaskHead(StripPrefix(key, prefix)) && model.HeadKind != ModelHeadKind.CausalLM) {
                plan.Fresh.Add(key);
            } else {
                missing.Add(key);
            }
        }
        if (mismatched.Count > 0)
            throw new ModelLoadException($"'{origin}' does not match its config: {mismatched.Count} shape mismatch(es): {Join(mismatched)}. " +
                                         "Check that config.json belongs to these weights.");
        if (missing.Count > 0)
            throw new ModelLoadException($"'{origin}' lacks {missing.Count} weight(s) that {model.GetType().Name} ({model.Config.ModelType}) needs: {Join(missing)}. " +
                                         (plan.Unexpected.Count > 0 ? $"Unused checkpoint keys: {Join(plan.Unexpected)}. " : "") +
                                         "Is this a complete checkpoint of that architecture and head?");
        return plan;
    }

    private static LoadReport Fill(TransformerModel model, IWeightSource source, LoadPlan plan, ModelLoadOptions options, List<Parameter> replaced,
        IReadOnlySet<string> quantizeWeights, Dictionary<string, QuantizedTensor> quantized)
    {
        var device = options.Device ?? CPU;
        var transposed = plan.Transposed.ToHashSet();
        using (torch.no_grad()) {
            foreach (var (key, name) in plan.SourceFor) {
                using var scope = NewDisposeScope();
                var value = source.Read(name).to(options.DType);
                // GPT-2 Conv1D keeps W as (in, out); a Linear holds (out, in).
                if (transposed.Contains(key)) value = value.t().contiguous();
                var module = key.EndsWith(".weight", StringComparison.Ordinal) ? key[..^".weight".Length] : null;
                if (module is not null && quantizeWeights.Contains(module)) {
                    // Quantized as soon as it is read: the full-precision model never exists in memory, only one weight.
                    var q = options.Quantization!;
                    quantized[module] = QuantizedTensor.Quantize(value.to(device), q.Type, q.BlockSize, q.DoubleQuant, options.DType);
                    // The full-precision staging copies just freed would otherwise stay in glibc's heap, and the next
                    // weight's land beside them: trimming per weight keeps the load peak near the quantized size.
                    scope.Dispose();
                    LoraPS.Runtime.NativeHeap.Trim();
                    continue;
                }
                replaced.Add(Replace(model, key, value.to(device), options.RequiresGrad));
            }
            using var seeded = options.Seed is { } seed ? new torch.Generator(unchecked((ulong)seed)) : null;
            foreach (var key in plan.Fresh) {
                using var scope = NewDisposeScope();
                var shape = model.state_dict()[key].shape;
                var value = torch.empty(shape, dtype: options.DType, device: device);
                // transformers' _init_weights for a new Linear: weight ~ N(0, initializer_range), bias = 0.
                if (key.EndsWith(".bias", StringComparison.Ordinal)) value.zero_();
                else if (seeded is null) nn.init.normal_(value, 0.0, model.Config.InitializerRange);
                else value.copy_(torch.randn(shape, dtype: ScalarType.Float32, generator: seeded).mul_(model.Config.InitializerRange));
                replaced.Add(Replace(model, key, value, options.RequiresGrad));
            }
        }
        return new LoadReport {
            LoadedCount = plan.SourceFor.Count,
            Missing = plan.Fresh,
            Unexpected = plan.Unexpected,
            Ignored = plan.Ignored,
            Transposed = plan.Transposed,
            Renamed = plan.Renamed,
            Tied = model.TiedParameters.Select(t => new TiedWeight(t.Tied, t.Source)).ToList(),
        };
    }

    /// <summary>Swaps the placeholder parameter at <paramref name="key"/> for <paramref name="value"/>; returns the placeholder.</summary>
    private static Parameter Replace(TransformerModel model, string key, Tensor value, bool requiresGrad)
    {
        var split = key.LastIndexOf('.');
        var owner = ModuleTree.Get(model, key[..split]);
        var leaf = key[(split + 1)..];
        var old = owner.named_parameters(recurse: false).First(p => p.name == leaf).parameter;
        var parameter = new Parameter(value, requiresGrad);
        parameter.DetachFromDisposeScope();
        ModuleTree.SetParameter(owner, leaf, parameter);
        return old;
    }

    private static string StripPrefix(string key, string prefix) =>
        key.StartsWith(prefix, StringComparison.Ordinal) ? key[prefix.Length..] : key;

    private static string Shape(long[] shape) => "[" + string.Join(", ", shape) + "]";

    private static string Join(IReadOnlyList<string> items) =>
        string.Join("; ", items.Take(12)) + (items.Count > 12 ? $"; … ({items.Count} in all)" : "");
}
