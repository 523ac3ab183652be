using LoraPS.Models;

namespace LoraPS.Evaluation;

/// <summary>
/// Runs a model as its base (adapters disabled) or with one named adapter active, and restores the previous adapter
/// state when disposed — so "base vs fine-tuned" compares the same loaded weights.
/// </summary>
public sealed class AdapterSelection : IDisposable
{
    readonly Adapters.LoraAdapterSet? adapters;
    readonly bool wasDisabled;
    readonly string[] wasActive;

    AdapterSelection(Adapters.LoraAdapterSet? adapters)
    {
        this.adapters = adapters;
        wasDisabled = adapters?.AdaptersDisabled ?? false;
        wasActive = adapters?.ActiveAdapters.ToArray() ?? Array.Empty<string>();
    }

    /// <summary>Selects <paramref name="adapter"/> (null = the base model).</summary>
    /// <exception cref="KeyNotFoundException">The model has no adapter of that name (the message lists its adapters).</exception>
    public static AdapterSelection Use(LoraModel model, string? adapter)
    {
        if (adapter is null)
        {
            // The base model: nothing to do when no adapter was ever added.
            var set = model.Adapters.Names.Count > 0 ? model.Adapters : null;
            var selection = new AdapterSelection(set);
            set?.Disable();
            return selection;
        }
        var adapters = model.Adapters;
        if (!adapters.Names.Contains(adapter))
            throw new KeyNotFoundException(adapters.Names.Count == 0
                ? $"The model '{model.Name}' has no adapters; add or import one (Add-LoraAdapter, Import-LoraAdapter) or leave out -Adapter to evaluate the base model."
                : $"The model '{model.Name}' has no adapter '{adapter}'; it has {string.Join(", ", adapters.Names)}.");
        var result = new AdapterSelection(adapters);
        adapters.SetActive(adapter);
        adapters.Enable();
        return result;
    }

    public void Dispose()
    {
        if (adapters is null) return;
        if (wasActive.Length > 0 && wasActive.All(adapters.Names.Contains)) adapters.SetActive(wasActive);
        if (wasDisabled) adapters.Disable(); else adapters.Enable();
    }
}
