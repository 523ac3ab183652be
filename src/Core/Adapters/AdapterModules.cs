using TorchSharp;
using static TorchSharp.torch.nn;

namespace LoraPS.Adapters;

/// <summary>
/// PEFT's <c>nn.ModuleDict</c> keyed by adapter name, so that a <see cref="LoraLinear"/>'s state dict reads
/// <c>lora_A.&lt;adapter&gt;.weight</c>. Unlike TorchSharp's <c>ModuleDict</c>, entries added or removed after the
/// parent was registered are registered and unregistered too.
/// </summary>
internal sealed class AdapterModules<T> : Module where T : Module
{
    public AdapterModules() : base("ModuleDict") { }

    public T this[string adapter] => (T)_internal_submodules[adapter];

    public bool Contains(string adapter) => _internal_submodules.ContainsKey(adapter);

    public IEnumerable<string> Names => named_children().Select(c => c.name);

    public void Add(string adapter, T module) => register_module(adapter, module);

    /// <summary>Unregisters and disposes the module of <paramref name="adapter"/>.</summary>
    public void Remove(string adapter)
    {
        var module = this[adapter];
        _internal_submodules.Remove(adapter);
        module.Dispose();
    }
}

/// <summary>
/// DoRA's magnitude m for one adapter: a module with one parameter named <c>weight</c>, shape (out), as PEFT's
/// <c>lora_magnitude_vector[adapter].weight</c>.
/// </summary>
internal sealed class DoraMagnitude : Module
{
    [TorchSharp.Utils.ComponentName(Name = "weight")]
    readonly TorchSharp.Modules.Parameter _weight;

    public DoraMagnitude(torch.Tensor magnitude) : base(nameof(DoraMagnitude))
    {
        _weight = new TorchSharp.Modules.Parameter(magnitude, requires_grad: true);
        RegisterComponents();
    }

    /// <summary>Reads through the registry, which <c>to(...)</c> and state-dict loading update.</summary>
    public TorchSharp.Modules.Parameter Weight => get_parameter("weight") ?? throw new InvalidOperationException("The DoRA magnitude lost its weight parameter.");
}
