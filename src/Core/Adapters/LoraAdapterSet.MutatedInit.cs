using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Adapters;

/// <summary>
/// Adapters whose initialisation rewrote the base weight (PiSSA, OLoRA, LoRA-GA: W ← W − s·B₀·A₀), and saving them
/// converted for the original base, as PEFT's <c>save_pretrained(path_initial_model_for_weight_conversion=…)</c>.
/// </summary>
public sealed partial class LoraAdapterSet
{
    /// <summary>
    /// True when <see cref="Save"/> writes <paramref name="name"/> converted for the original base model: it was
    /// created here by an init that rewrote the base weight, so its A₀, B₀ are known. Adapters loaded from files are
    /// saved as they are.
    /// </summary>
    public bool SavesConverted(string name) => _adapters[Known(name)].InitialFactors is not null && !_adapters[name].Config.UseDora;

    /// <summary>The adapters created here whose initialisation rewrote the base weights (PiSSA, OLoRA, LoRA-GA), oldest first.</summary>
    internal IEnumerable<string> BaseRewritingAdapters => _order.Where(n => _adapters[n].InitialFactors is not null);

    /// <summary>The layers and settings <paramref name="config"/> selects on this model, without changing it.</summary>
    internal IReadOnlyList<LoraTarget> ResolveTargets(LoraConfig config) =>
        Plan(config with { TaskType = config.TaskType ?? TaskTypeOfHead() }, strictModulesToSave: true).Targets;

    /// <summary>
    /// Adds an adapter whose A and B are given per layer by <paramref name="factors"/> (called with the target and its
    /// base weight before anything changes), then rewrites every base weight to W − s·B·A in float32 (cast back), so
    /// the model's output is unchanged. Nothing is modified unless every layer's factors were computed.
    /// </summary>
    internal LoraAdapterInfo AddWithInitialFactors(string name, LoraConfig config, Func<LoraTarget, Tensor, (Tensor A, Tensor B)> factors,
        IProgress<(int Done, int Total, string Path)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(factors);
        CheckNewName(name);
        ThrowIfMerged($"add adapter '{name}'");
        if (config.LoraBias) throw new NotSupportedException("LoraBias (PEFT lora_bias) is not supported: LoraPS's LoRA layers have no bias on lora_B.");
        if (config.UseDora) throw new NotSupportedException("LoRA-GA with DoRA is not supported in LoraPS; add the adapter without UseDora.");
        var plan = Plan(config with { TaskType = config.TaskType ?? TaskTypeOfHead() }, strictModulesToSave: true);

        var computed = new Dictionary<string, (Tensor A, Tensor B)>(StringComparer.Ordinal);
        try
        {
            for (int i = 0; i < plan.Targets.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var target = plan.Targets[i];
                using var scope = NewDisposeScope();
                var (a, b) = factors(target, BaseWeightAt(target.Path));
                computed[target.Path] = (a.DetachFromDisposeScope(), b.DetachFromDisposeScope());
                progress?.Report((i + 1, plan.Targets.Count, target.Path));
            }
            Inject(name, plan, (layer, target) =>
            {
                var (a, b) = computed[target.Path];
                layer.AddAdapterWithWeights(name, target.Options, a, b, magnitude: null);
            }, copies: null);
            using (no_grad())
            {
                foreach (var target in plan.Targets)
                {
                    using var scope = NewDisposeScope();
                    var (a, b) = computed[target.Path];
                    SubtractOffset(_layers[target.Path].BaseLayer.weight!, a, b, target.Scaling);
                }
            }
        }
        finally
        {
            foreach (var (a, b) in computed.Values)
            {
                a.Dispose();
                b.Dispose();
            }
        }
        RecordInitialFactors(name);
        return Get(name);
    }

    /// <summary>The plain float weight at <paramref name="path"/> (inside its LoRA layer if wrapped).</summary>
    internal Tensor BaseWeightAt(string path) => BaseWeightOf(Model.GetModule(path), path);

    /// <summary>
    /// The weight of a plain floating-point Linear (or of the one a LoRA layer wraps). Anything else, e.g. a quantized
    /// linear, cannot be differentiated or rewritten in place, so it is refused with a message that says so.
    /// </summary>
    internal static Tensor BaseWeightOf(nn.Module module, string path)
    {
        var linear = module switch
        {
            LoraLinear lora => lora.BaseLayer,
            TorchSharp.Modules.Linear plain => plain,
            _ => null,
        };
        var weight = linear?.weight;
        if (weight is null || !weight.is_floating_point())
            throw new NotSupportedException(
                $"'{path}' is a {module.GetType().Name}{(weight is null ? "" : $" with {weight.dtype} weights")}, not a plain floating-point Linear. " +
                "LoRA-GA (and PiSSA/OLoRA) need the full-precision weight to differentiate and rewrite; load the model unquantized (FP32 or BF16).");
        return weight;
    }

    /// <summary>W ← W − s·B·A, computed in float32 and cast back (official: <c>offset = (B @ A) * scaling</c>).</summary>
    static void SubtractOffset(Tensor weight, Tensor a, Tensor b, double scaling)
    {
        var offset = b.to(ScalarType.Float32).matmul(a.to(ScalarType.Float32)) * scaling;
        weight.copy_((weight.to(ScalarType.Float32) - offset).to(weight.dtype));
    }

    /// <summary>Keeps copies of A₀ and B₀ of every layer of <paramref name="name"/> for the conversion on save.</summary>
    void RecordInitialFactors(string name)
    {
        var adapter = _adapters[name];
        DisposeInitialFactors(adapter);
        var factors = new Dictionary<string, (Tensor A, Tensor B)>(StringComparer.Ordinal);
        using (no_grad())
        {
            foreach (var target in adapter.Targets)
            {
                var layer = _layers[target.Path];
                factors[target.Path] = (layer.LoraA(name).detach().clone().DetachFromDisposeScope(), layer.LoraB(name).detach().clone().DetachFromDisposeScope());
            }
        }
        adapter.InitialFactors = factors;
    }

    static void DisposeInitialFactors(Adapter adapter)
    {
        if (adapter.InitialFactors is null) return;
        foreach (var (a, b) in adapter.InitialFactors.Values)
        {
            a.Dispose();
            b.Dispose();
        }
        adapter.InitialFactors = null;
    }

    /// <summary>
    /// The adapter as a plain LoRA for the original base (PEFT <c>subtract_mutated_init</c>): per layer
    /// A' = [A ; A₀] (rows) and B' = [B | −B₀] (columns), so s·B'·A' = s·B·A − s·B₀·A₀ = (trained − original W) on top of
    /// the original weight. The rank doubles; α doubles (×√2 under rsLoRA, whose scaling is α/√r) so s is unchanged;
    /// rank/alpha patterns likewise; <c>init_lora_weights</c> becomes true. Tensors are new, in the caller's dispose scope.
    /// </summary>
    (LoraConfig Config, List<KeyValuePair<string, Tensor>> Tensors) ConvertedForOriginalBase(string name, LoraConfig config, List<KeyValuePair<string, Tensor>> tensors)
    {
        var adapter = _adapters[name];
        var initial = adapter.InitialFactors!;
        double alphaFactor = config.UseRsLora ? Math.Sqrt(2) : 2;
        var converted = config with
        {
            Rank = config.Rank * 2,
            Alpha = config.Alpha * alphaFactor,
            RankPattern = config.RankPattern.ToDictionary(p => p.Key, p => p.Value * 2),
            AlphaPattern = config.AlphaPattern.ToDictionary(p => p.Key, p => p.Value * alphaFactor),
            Init = LoraInit.Default,
        };
        var replaced = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (no_grad())
        {
            foreach (var target in adapter.Targets)
            {
                var layer = _layers[target.Path];
                var (a0, b0) = initial[target.Path];
                var a = layer.LoraA(name);
                var b = layer.LoraB(name);
                replaced[PeftStateDictKeys.ToPeft(target.Path, $"lora_A.{name}.weight")] = cat([a.detach(), a0.to(a.dtype)], 0);
                replaced[PeftStateDictKeys.ToPeft(target.Path, $"lora_B.{name}.weight")] = cat([b.detach(), b0.to(b.dtype).neg()], 1);
            }
        }
        return (converted, tensors.Select(t => replaced.TryGetValue(t.Key, out var r) ? new KeyValuePair<string, Tensor>(t.Key, r) : t).ToList());
    }
}
