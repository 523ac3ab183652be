using LoraPS.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace LoraPS.Adapters;

/// <summary>
/// A linear layer with LoRA adapters, as PEFT's <c>lora.Linear</c>:
/// <code>
///                 ┌───────────────┐
///   x ──────────▶ │ W (frozen)    │ ──────────────┐
///    │            └───────────────┘               ▼
///    │  dropout   ┌─────┐  r  ┌─────┐   × s      (+) ──▶ y = W·x + b + s·B·A·x
///    └──────────▶ │  A  │ ──▶ │  B  │ ─────────▶  ▲
///                 └─────┘     └─────┘
///                 (r, in)     (out, r)     s = α/r  (α/√r with rsLoRA)
/// </code>
/// </summary>
/// <remarks>
/// <para>
/// The update is applied as two skinny matmuls, (x·Aᵀ)·Bᵀ, so the (out, in) product B·A is never built in the
/// forward: it costs r·(in + out) per token instead of in·out. Only merging (and DoRA's weight norm, as in PEFT)
/// forms it.
/// </para>
/// <para>
/// Several named adapters can live in one layer. The active ones are summed; inactive ones are frozen. Merging
/// folds adapters into W (a stack, undone in reverse by <see cref="Unmerge"/>); while anything is merged the
/// forward is the base layer alone, as in PEFT. The state dict uses PEFT's in-memory names:
/// <c>base_layer.weight</c>, <c>lora_A.&lt;adapter&gt;.weight</c>, <c>lora_B.&lt;adapter&gt;.weight</c>,
/// <c>lora_magnitude_vector.&lt;adapter&gt;.weight</c>; <see cref="PeftStateDictKeys"/> maps them to the file names.
/// </para>
/// <para>
/// The base layer is a torch <c>Linear</c> with W as (out, in), or a <see cref="QuantizedLinear"/> (QLoRA: W stored
/// in 4 or 8 bits, frozen; the adapters train on top unchanged). GPT-2's <c>Conv1D</c> weights are loaded
/// transposed into a Linear, so <see cref="FanInFanOut"/> only tells exporters to transpose merged weights back.
/// A quantized base is never rewritten: in-place merges and PiSSA/OLoRA (which rewrite W) are refused, and
/// <see cref="MergedWeight"/> returns the dequantized weight with the adapters folded in.
/// </para>
/// </remarks>
public sealed partial class LoraLinear : Module<Tensor, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "base_layer")]
    Module<Tensor, Tensor> _baseLayer; // swapped once, by QuantizeBase
    [TorchSharp.Utils.ComponentName(Name = "lora_A")]
    readonly AdapterModules<Linear> _loraA = new();
    [TorchSharp.Utils.ComponentName(Name = "lora_B")]
    readonly AdapterModules<Linear> _loraB = new();
    [TorchSharp.Utils.ComponentName(Name = "lora_dropout")]
    readonly AdapterModules<Module<Tensor, Tensor>> _loraDropout = new();
    [TorchSharp.Utils.ComponentName(Name = "lora_magnitude_vector")]
    readonly AdapterModules<DoraMagnitude> _magnitude = new();

    readonly Dictionary<string, LoraLayerOptions> _options = new(StringComparer.Ordinal);
    readonly List<string> _adapters = [];
    readonly List<string> _active = [];
    readonly List<string> _merged = [];
    // PEFT caches DoRA's ‖W + ΔW‖ at merge time: unmerging must divide by the same norm it multiplied with.
    readonly Dictionary<string, Tensor> _doraMergeNorms = new(StringComparer.Ordinal);
    bool _disabled;

    /// <summary>Wraps <paramref name="baseLayer"/>, which it then owns (disposing the LoRA layer disposes it), and freezes its weight and bias.</summary>
    /// <param name="baseLayer">The layer to adapt; W is (out, in).</param>
    /// <param name="fanInFanOut">True when the checkpoint stores this weight as (in, out) (GPT-2 <c>Conv1D</c>).</param>
    public LoraLinear(Linear baseLayer, bool fanInFanOut = false) : this((Module<Tensor, Tensor>)baseLayer, fanInFanOut)
    {
    }

    /// <summary>Wraps a quantized frozen layer (QLoRA), which it then owns.</summary>
    /// <param name="baseLayer">The quantized layer to adapt; W is (out, in).</param>
    /// <param name="fanInFanOut">True when the checkpoint stores this weight as (in, out) (GPT-2 <c>Conv1D</c>).</param>
    public LoraLinear(QuantizedLinear baseLayer, bool fanInFanOut = false) : this((Module<Tensor, Tensor>)baseLayer, fanInFanOut)
    {
    }

    LoraLinear(Module<Tensor, Tensor> baseLayer, bool fanInFanOut) : base(nameof(LoraLinear))
    {
        ArgumentNullException.ThrowIfNull(baseLayer);
        _baseLayer = baseLayer;
        FanInFanOut = fanInFanOut;
        foreach (var p in baseLayer.parameters()) p.requires_grad = false;
        RegisterComponents();
    }

    /// <summary>The full-precision base layer.</summary>
    /// <exception cref="InvalidOperationException">The base is quantized; use <see cref="QuantizedBaseLayer"/>.</exception>
    public Linear BaseLayer => _baseLayer as Linear
        ?? throw new InvalidOperationException("This LoRA layer's base is quantized (QLoRA); use QuantizedBaseLayer, or MergedWeight() for its dequantized weight.");

    /// <summary>The quantized base layer, or null when the base is a full-precision Linear.</summary>
    public QuantizedLinear? QuantizedBaseLayer => _baseLayer as QuantizedLinear;

    /// <summary>The base layer whatever its kind (a Linear or a <see cref="QuantizedLinear"/>).</summary>
    public Module<Tensor, Tensor> BaseModule => _baseLayer;

    /// <summary>True when the base weight is stored quantized.</summary>
    public bool IsBaseQuantized => _baseLayer is QuantizedLinear;

    public long InFeatures => _baseLayer is QuantizedLinear q ? q.InFeatures : ((Linear)_baseLayer).in_features;
    public long OutFeatures => _baseLayer is QuantizedLinear q ? q.OutFeatures : ((Linear)_baseLayer).out_features;
    public bool FanInFanOut { get; }

    /// <summary>Where the base weight lives (adapters are created there).</summary>
    Device BaseDevice => _baseLayer is QuantizedLinear q ? q.Device : ((Linear)_baseLayer).weight!.device;

    /// <summary>
    /// W for reading: the live parameter of a Linear base, or a new dequantized float32 tensor of a quantized one
    /// (in the caller's dispose scope).
    /// </summary>
    Tensor ReadBaseWeight() => _baseLayer is QuantizedLinear q ? q.DequantizedWeight(ScalarType.Float32) : ((Linear)_baseLayer).weight!;

    /// <summary>The dtype merged weights are produced in: W's dtype, or the compute dtype of a quantized base.</summary>
    ScalarType BaseDType => _baseLayer is QuantizedLinear q ? q.ComputeDType : ((Linear)_baseLayer).weight!.dtype;

    /// <summary>
    /// Replaces a full-precision base by <paramref name="quantize"/>(base) (quantizing a model that already has adapters)
    /// and frees the Linear. The adapters are kept as they are: A and B never depend on W, and DoRA's magnitude m is a
    /// parameter (learned, or ‖W + s·B·A‖ when added), so the effective weight keeps its row norms m and takes its
    /// direction from the dequantized W, which the DoRA forward reads at every step.
    /// </summary>
    /// <exception cref="AlreadyQuantizedException">The base is already quantized.</exception>
    /// <exception cref="InvalidOperationException">Adapters are merged into W.</exception>
    internal void QuantizeBase(Func<Linear, QuantizedLinear> quantize)
    {
        ArgumentNullException.ThrowIfNull(quantize);
        if (_baseLayer is not Linear linear) throw new AlreadyQuantizedException("This LoRA layer's base is already quantized; it cannot be quantized again.");
        if (IsMerged) throw new InvalidOperationException(MergedBaseMessage);
        var quantized = quantize(linear);
        LoraPS.Models.ModuleTree.Replace(this, "base_layer", _ => quantized);
        linear.Dispose();
    }

    /// <summary>Why a merged layer's base cannot be quantized, and what to do.</summary>
    internal string MergedBaseMessage =>
        $"Adapter {string.Join(", ", _merged)} is merged into the base weights (W + ΔW); quantizing them would bake the update into the frozen base. Unmerge first (Merge-LoraAdapter -Unmerge), then quantize.";

    /// <summary>Adapter names in the order they were added.</summary>
    public IReadOnlyList<string> Adapters => _adapters;
    public IReadOnlyList<string> ActiveAdapters => _active;
    /// <summary>The merged adapters, oldest first.</summary>
    public IReadOnlyList<string> MergedAdapters => _merged;
    public bool IsMerged => _merged.Count > 0;
    public bool AdaptersDisabled => _disabled;

    public LoraLayerOptions Options(string adapter) => _options[Known(adapter)];
    public double Scaling(string adapter) => Options(adapter).Scaling;
    /// <summary>lora_A of <paramref name="adapter"/>, shape (r, in).</summary>
    public Parameter LoraA(string adapter) => _loraA[Known(adapter)].weight!;
    /// <summary>lora_B of <paramref name="adapter"/>, shape (out, r).</summary>
    public Parameter LoraB(string adapter) => _loraB[Known(adapter)].weight!;
    /// <summary>DoRA's magnitude m, shape (out), or null for a plain LoRA adapter.</summary>
    public Parameter? Magnitude(string adapter) => _magnitude.Contains(Known(adapter)) ? _magnitude[adapter].Weight : null;

    /// <summary>
    /// Adds an adapter, initialised by <see cref="LoraLayerOptions.Init"/>. The first adapter becomes active; later
    /// ones start inactive and frozen until <see cref="SetActiveAdapters"/>, as in PEFT.
    /// </summary>
    /// <param name="name">Adapter name (PEFT's default is <c>"default"</c>); no dots.</param>
    /// <param name="options">Rank, alpha, dropout, variant and init.</param>
    /// <param name="generator">Random source; null uses torch's global generator. Draws happen in PEFT's order
    /// (A's and B's <c>nn.Linear</c> defaults, then the init), so a seed reproduces PEFT's weights.</param>
    /// <param name="dtype">Adapter dtype. PEFT upcasts adapters to float32 by default, whatever the base dtype.</param>
    public void AddAdapter(string name, LoraLayerOptions options, Generator? generator = null, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(options);
        CheckNewName(name);
        if (IsMerged) throw new InvalidOperationException($"Cannot add adapter '{name}' while {string.Join(", ", _merged)} is merged into the weight; call Unmerge() first.");

        if (IsBaseQuantized && options.Init.Kind is LoraInitKind.PiSSA or LoraInitKind.OLoRA)
            throw new NotSupportedException($"{options.Init.Kind} initialisation rewrites the base weight to W − s·B·A, but this layer's base is quantized and LoraPS never re-quantizes it. Use the default (or Gaussian) init on a quantized model, or load the model without -Quantize.");

        using var scope = NewDisposeScope();
        Tensor baseWeight = _baseLayer is QuantizedLinear quantized
            ? empty(quantized.OutFeatures, quantized.InFeatures, dtype: ScalarType.Float32, device: quantized.Device)
            : ((Linear)_baseLayer).weight!;
        // The default and Gaussian inits read only W's shape and device: a quantized base needs no dequantization for them.
        if (options.UseDora && IsBaseQuantized) baseWeight = ReadBaseWeight();
        var (a, b) = LoraInitialization.Initialize(baseWeight, options, generator, dtype);
        Tensor? magnitude = options.UseDora ? WeightNorm(baseWeight, b, a, options.Scaling) : null;
        Register(name, options, a, b, magnitude);
    }

    /// <summary>
    /// Adds an adapter with given weights (from a PEFT file) instead of an initialisation: no random draws, and the
    /// base weight is never rewritten, whatever <see cref="LoraLayerOptions.Init"/> says. Values are copied and cast to
    /// <paramref name="dtype"/>.
    /// </summary>
    internal void AddAdapterWithWeights(string name, LoraLayerOptions options, Tensor loraA, Tensor loraB, Tensor? magnitude, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(options);
        CheckNewName(name);
        if (IsMerged) throw new InvalidOperationException($"Cannot add adapter '{name}' while {string.Join(", ", _merged)} is merged into the weight; call Unmerge() first.");
        if (options.UseDora != magnitude is not null)
            throw new ArgumentException($"Adapter '{name}': {(options.UseDora ? "a DoRA adapter needs its lora_magnitude_vector" : "a magnitude vector was given for a plain LoRA adapter")}.");
        using var scope = NewDisposeScope();
        var device = BaseDevice;
        Register(name, options, loraA.to(dtype, device).clone(), loraB.to(dtype, device).clone(), magnitude?.to(dtype, device).clone());
    }

    void Register(string name, LoraLayerOptions options, Tensor a, Tensor b, Tensor? magnitude)
    {
        CheckShapes(name, options.Rank, a, b, magnitude);
        _loraA.Add(name, Linear(new Parameter(a.DetachFromDisposeScope()), null));
        _loraB.Add(name, Linear(new Parameter(b.DetachFromDisposeScope()), null));
        // PEFT uses nn.Identity when p == 0, so nothing random happens on the LoRA path then.
        _loraDropout.Add(name, options.Dropout > 0 ? Dropout(options.Dropout) : Identity());
        if (magnitude is not null) _magnitude.Add(name, new DoraMagnitude(magnitude.DetachFromDisposeScope()));
        _options[name] = options;
        _adapters.Add(name);
        if (training) _loraDropout[name].train(); else _loraDropout[name].eval();
        SetActiveAdapters(_active.Count == 0 ? [name] : [.. _active]);
    }

    /// <summary>
    /// Overwrites an adapter's weights (e.g. from a PEFT file) after checking shapes; values are copied and cast
    /// to the adapter's dtype.
    /// </summary>
    public void SetAdapterWeights(string adapter, Tensor loraA, Tensor loraB, Tensor? magnitude = null)
    {
        var options = Options(adapter);
        CheckShapes(adapter, options.Rank, loraA, loraB, magnitude);
        if (magnitude is not null && !options.UseDora) throw new ArgumentException($"Adapter '{adapter}' is not a DoRA adapter but a magnitude vector was given.");
        if (options.UseDora && magnitude is null) throw new ArgumentException($"Adapter '{adapter}' is a DoRA adapter; give its lora_magnitude_vector too.");
        if (_merged.Contains(adapter)) throw new InvalidOperationException($"Adapter '{adapter}' is merged; call Unmerge() before replacing its weights.");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        LoraA(adapter).copy_(loraA);
        LoraB(adapter).copy_(loraB);
        if (magnitude is not null) Magnitude(adapter)!.copy_(magnitude);
    }

    /// <summary>
    /// The adapter's parameters under their PEFT file keys, for the layer at <paramref name="modulePath"/>
    /// (e.g. <c>model.layers.0.self_attn.q_proj</c>). These are the live parameters, not copies.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> PeftTensors(string modulePath, string adapter)
    {
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            [PeftStateDictKeys.ToPeft(modulePath, $"lora_A.{adapter}.weight")] = LoraA(adapter),
            [PeftStateDictKeys.ToPeft(modulePath, $"lora_B.{adapter}.weight")] = LoraB(adapter),
        };
        if (Magnitude(adapter) is { } m) tensors[PeftStateDictKeys.ToPeft(modulePath, $"lora_magnitude_vector.{adapter}.weight")] = m;
        return tensors;
    }

    /// <summary>
    /// Copies an adapter's weights from PEFT file tensors (keys as <see cref="PeftTensors"/> names them).
    /// </summary>
    /// <exception cref="KeyNotFoundException">A tensor the adapter needs is missing; the message names the key.</exception>
    public void LoadPeftTensors(string modulePath, string adapter, IReadOnlyDictionary<string, Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        Tensor Get(string layerKey)
        {
            var key = PeftStateDictKeys.ToPeft(modulePath, layerKey);
            return tensors.TryGetValue(key, out var t) ? t : throw new KeyNotFoundException($"The adapter file has no '{key}' for layer '{modulePath}'.");
        }
        var magnitude = Options(adapter).UseDora ? Get($"lora_magnitude_vector.{adapter}.weight") : null;
        SetAdapterWeights(adapter, Get($"lora_A.{adapter}.weight"), Get($"lora_B.{adapter}.weight"), magnitude);
    }

    /// <summary>
    /// Chooses the adapters the forward sums; they become trainable and all others frozen (PEFT's <c>set_adapter</c>).
    /// </summary>
    public void SetActiveAdapters(params string[] adapters)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        foreach (var name in adapters) Known(name);
        _active.Clear();
        _active.AddRange(adapters.Distinct(StringComparer.Ordinal));
        if (!_disabled) UpdateTrainable();
    }

    /// <summary>Makes the forward the base layer alone; merged adapters are unmerged first, as PEFT does.</summary>
    public void DisableAdapters()
    {
        if (IsMerged) Unmerge();
        _disabled = true;
        foreach (var p in AdapterParameters(_adapters)) p.requires_grad = false;
    }

    public void EnableAdapters()
    {
        _disabled = false;
        UpdateTrainable();
    }

    /// <summary>Removes an adapter. If it was the last active one, the first remaining adapter becomes active (PEFT).</summary>
    public void DeleteAdapter(string adapter)
    {
        Known(adapter);
        if (_merged.Contains(adapter))
            throw new InvalidOperationException($"Adapter '{adapter}' is merged into the weight; call Unmerge() before deleting it, or the weight keeps its update.");
        _loraA.Remove(adapter);
        _loraB.Remove(adapter);
        _loraDropout.Remove(adapter);
        if (_magnitude.Contains(adapter)) _magnitude.Remove(adapter);
        _options.Remove(adapter);
        _adapters.Remove(adapter);
        if (_active.Remove(adapter) && _active.Count == 0 && _adapters.Count > 0) _active.Add(_adapters[0]);
        if (!_disabled) UpdateTrainable();
    }

    /// <summary>y = base(x) + Σ_active s·(dropout(x)·Aᵀ)·Bᵀ (DoRA adapters: see <see cref="DoraUpdate"/>).</summary>
    public override Tensor forward(Tensor x)
    {
        if (_disabled || IsMerged || _active.Count == 0) return _baseLayer.forward(x);

        using var scope = NewDisposeScope();
        var result = _baseLayer.forward(x);
        var resultDtype = result.dtype;
        foreach (var adapter in _active)
        {
            var a = _loraA[adapter].weight!;
            var b = _loraB[adapter].weight!;
            var options = _options[adapter];
            // PEFT casts the input to the adapter dtype (float32 by default) and the sum back at the end.
            var dropped = _loraDropout[adapter].forward(x.to(a.dtype));
            result = result + (_magnitude.Contains(adapter)
                ? DoraUpdate(dropped, a, b, _magnitude[adapter].Weight, options.Scaling)
                : LoraUpdate(dropped, a, b, options.Scaling));
        }
        return result.to(resultDtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// s·(x·Aᵀ)·Bᵀ: two skinny matmuls through the rank-r bottleneck; B·A is never formed. PEFT scales the
    /// (tokens, out) result; scaling the (tokens, r) bottleneck instead is the same product and saves a full-width
    /// elementwise pass in the forward and in the backward.
    /// </summary>
    internal static Tensor LoraUpdate(Tensor x, Tensor a, Tensor b, double scaling) =>
        functional.linear(functional.linear(x, a) * scaling, b);

    /// <summary>
    /// DoRA's addition to base(x) (PEFT 0.10 <c>_apply_dora</c>): with g = m / ‖W + s·B·A‖ per output row and the
    /// norm detached (DoRA §4.3: treated as a constant so the gradient stays cheap),
    /// <c>(g − 1)·(x·Wᵀ) + g·(x·Aᵀ·Bᵀ)·s</c>. Then base(x) + this = g·(W + s·B·A)·x + b: the bias is not rescaled.
    /// </summary>
    Tensor DoraUpdate(Tensor x, Tensor a, Tensor b, Tensor magnitude, double scaling)
    {
        // A quantized base is dequantized for this step only (DoRA needs W itself, not just x·Wᵀ).
        var weight = ReadBaseWeight().to(x.dtype);
        var norm = WeightNorm(weight, b, a, scaling);
        var g = (magnitude / norm).view(1, -1);
        return (g - 1) * functional.linear(x, weight) + g * functional.linear(functional.linear(x, a), b) * scaling;
    }

    /// <summary>‖W + s·B·A‖₂ per output row, without gradient (DoRA's detached norm; also m's initial value).</summary>
    static Tensor WeightNorm(Tensor weight, Tensor b, Tensor a, double scaling)
    {
        using var noGrad = no_grad();
        var dtype = ComputeDtype(a.dtype);
        var combined = weight.to(dtype) + scaling * b.to(dtype).matmul(a.to(dtype));
        return linalg.norm(combined, dims: [1]).to(a.dtype);
    }

    /// <summary>Adapter math runs in float32 at least, as PEFT does for half-precision weights.</summary>
    static ScalarType ComputeDtype(ScalarType adapterDtype) =>
        adapterDtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    void UpdateTrainable()
    {
        foreach (var adapter in _adapters)
        {
            bool trainable = _active.Contains(adapter);
            foreach (var p in AdapterParameters([adapter])) p.requires_grad = trainable;
        }
    }

    IEnumerable<Parameter> AdapterParameters(IEnumerable<string> adapters)
    {
        foreach (var adapter in adapters)
        {
            yield return _loraA[adapter].weight!;
            yield return _loraB[adapter].weight!;
            if (_magnitude.Contains(adapter)) yield return _magnitude[adapter].Weight;
        }
    }

    string Known(string adapter) => _options.ContainsKey(adapter)
        ? adapter
        : throw new KeyNotFoundException($"This LoRA layer has no adapter '{adapter}'; it has {(_adapters.Count == 0 ? "none" : string.Join(", ", _adapters))}.");

    void CheckNewName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('.')) throw new ArgumentException($"Adapter name '{name}' contains a dot; state-dict keys use dots as separators.", nameof(name));
        if (_options.ContainsKey(name)) throw new ArgumentException($"This LoRA layer already has an adapter '{name}'; delete it first or pick another name.", nameof(name));
    }

    void CheckShapes(string adapter, int rank, Tensor a, Tensor b, Tensor? magnitude)
    {
        static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
        if (!a.shape.SequenceEqual([rank, InFeatures]))
            throw new ArgumentException($"Adapter '{adapter}': lora_A must be [{rank}, {InFeatures}] (r, in), got {Shape(a)}.");
        if (!b.shape.SequenceEqual([OutFeatures, rank]))
            throw new ArgumentException($"Adapter '{adapter}': lora_B must be [{OutFeatures}, {rank}] (out, r), got {Shape(b)}.");
        if (magnitude is not null && !magnitude.shape.SequenceEqual([OutFeatures]))
            throw new ArgumentException($"Adapter '{adapter}': lora_magnitude_vector must be [{OutFeatures}] (out), got {Shape(magnitude)}.");
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var norm in _doraMergeNorms.Values) norm.Dispose();
            _doraMergeNorms.Clear();
        }
        base.Dispose(disposing);
    }
}
