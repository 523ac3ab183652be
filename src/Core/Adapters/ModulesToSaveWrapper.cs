using LoraPS.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace LoraPS.Adapters;

/// <summary>
/// PEFT's <c>ModulesToSaveWrapper</c>: a module trained and saved whole (<c>modules_to_save</c>, e.g. a
/// classification head). It keeps the frozen original and one trainable copy per adapter; the forward runs the active
/// adapter's copy, or the original when no adapter with a copy is active or adapters are disabled.
/// </summary>
/// <remarks>
/// LoraPS wraps the parameter-holding leaves (Linear, LayerNorm, RMSNorm) rather than a composite module such as
/// RoBERTa's two-layer classifier: the composite keeps its own forward (dropout, tanh) and each leaf below it gets
/// copies. The adapter file keys are the same either way (<c>base_model.model.classifier.dense.weight</c>); only
/// the in-memory names differ from PEFT (<c>classifier.dense.modules_to_save.default.weight</c>).
/// </remarks>
public sealed class ModulesToSaveWrapper : Module<Tensor, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "original_module")]
    readonly Module<Tensor, Tensor> _original;
    [TorchSharp.Utils.ComponentName(Name = "modules_to_save")]
    readonly AdapterModules<Module<Tensor, Tensor>> _copies = new();

    readonly List<string> _adapters = [];

    /// <summary>Wraps <paramref name="original"/> (which it then owns) and freezes it.</summary>
    /// <exception cref="NotSupportedException">The module is not a Linear, LayerNorm or RMSNorm.</exception>
    public ModulesToSaveWrapper(Module<Tensor, Tensor> original) : base(nameof(ModulesToSaveWrapper))
    {
        ArgumentNullException.ThrowIfNull(original);
        if (!CanCopy(original))
            throw new NotSupportedException($"A {original.GetType().Name} cannot be trained as a whole module (modules_to_save); LoraPS copies Linear, LayerNorm and RMSNorm layers.");
        _original = original;
        foreach (var p in original.parameters()) p.requires_grad = false;
        RegisterComponents();
    }

    public Module<Tensor, Tensor> OriginalModule => _original;

    /// <summary>Adapters that have a copy here, in the order they were added.</summary>
    public IReadOnlyList<string> Adapters => _adapters;

    /// <summary>The adapter whose copy the forward uses, or null for the original.</summary>
    public string? ActiveAdapter { get; private set; }

    /// <summary>True while adapters are disabled: the forward uses the original.</summary>
    public bool AdaptersDisabled { get; internal set; }

    /// <summary>The trainable copy of <paramref name="adapter"/>.</summary>
    public Module<Tensor, Tensor> Copy(string adapter) => _copies.Contains(adapter)
        ? _copies[adapter]
        : throw new KeyNotFoundException($"This module has no trained copy for adapter '{adapter}'; it has {(_adapters.Count == 0 ? "none" : string.Join(", ", _adapters))}.");

    /// <summary>Parameters of a copy under their names inside the original module (<c>weight</c>, <c>bias</c>).</summary>
    public IEnumerable<(string Name, Parameter Parameter)> CopyParameters(string adapter) =>
        Copy(adapter).named_parameters().Select(p => (p.name, p.parameter));

    /// <summary>Parameters of the original module by name.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> OriginalParameters() =>
        _original.named_parameters().Select(p => (p.name, p.parameter));

    /// <summary>Adds a copy of the original's current values for <paramref name="adapter"/> (PEFT deep-copies too).</summary>
    internal void AddCopy(string adapter)
    {
        if (_copies.Contains(adapter)) throw new ArgumentException($"This module already has a copy for adapter '{adapter}'.", nameof(adapter));
        var copy = CopyOf(_original);
        if (_original.training) copy.train(); else copy.eval();
        _copies.Add(adapter, copy);
        _adapters.Add(adapter);
    }

    internal void RemoveCopy(string adapter)
    {
        if (!_copies.Contains(adapter)) return;
        _copies.Remove(adapter);
        _adapters.Remove(adapter);
        if (ActiveAdapter == adapter) ActiveAdapter = null;
    }

    internal void SetActiveAdapter(string? adapter)
    {
        if (adapter is not null) Copy(adapter);
        ActiveAdapter = adapter;
    }

    public override Tensor forward(Tensor x) =>
        AdaptersDisabled || ActiveAdapter is null ? _original.call(x) : _copies[ActiveAdapter].call(x);

    /// <summary>True for the leaf modules this wrapper can copy.</summary>
    public static bool CanCopy(Module module) => module is TorchSharp.Modules.Linear or TorchSharp.Modules.LayerNorm or RmsNorm;

    /// <summary>
    /// A new module of the same kind holding clones of <paramref name="module"/>'s parameters. It is built on the
    /// meta device and then given the clones, so no random initialisation runs (and no generator is advanced).
    /// </summary>
    static Module<Tensor, Tensor> CopyOf(Module<Tensor, Tensor> module)
    {
        using var noGrad = no_grad();
        static Parameter Clone(Parameter p)
        {
            var clone = new Parameter(p.detach().clone(), requires_grad: true);
            clone.DetachFromDisposeScope();
            return clone;
        }
        switch (module)
        {
            case Linear linear:
            {
                var copy = Linear(linear.in_features, linear.out_features, hasBias: linear.bias is not null, device: META, dtype: linear.weight!.dtype);
                var (oldWeight, oldBias) = (copy.weight, copy.bias);
                copy.weight = Clone(linear.weight!);
                if (linear.bias is not null) copy.bias = Clone(linear.bias);
                oldWeight?.Dispose();
                oldBias?.Dispose();
                return copy;
            }
            case LayerNorm norm:
            {
                var copy = LayerNorm(norm.normalized_shape, norm.eps, norm.weight is not null, norm.bias is not null, device: META, dtype: (norm.weight ?? norm.bias)?.dtype);
                var (oldWeight, oldBias) = (copy.weight, copy.bias);
                if (norm.weight is not null) copy.weight = Clone(norm.weight);
                if (norm.bias is not null) copy.bias = Clone(norm.bias);
                oldWeight?.Dispose();
                oldBias?.Dispose();
                return copy;
            }
            case RmsNorm rms:
            {
                var copy = new RmsNorm(rms.weight.shape[0], rms.Eps, META, rms.weight.dtype);
                var old = copy.weight;
                copy.weight = Clone(rms.weight);
                old.Dispose();
                return copy;
            }
            default:
                throw new NotSupportedException($"A {module.GetType().Name} cannot be copied for modules_to_save.");
        }
    }
}
