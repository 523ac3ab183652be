using System.Management.Automation;
using LoraPS.Models;

namespace LoraPS.Module.Infrastructure;

/// <summary>Shared checks of the adapter cmdlets: adapter names are resolved here, with errors that list what exists.</summary>
public abstract class AdapterCmdlet : LoraCmdlet
{
    /// <summary>
    /// The adapters <paramref name="patterns"/> name on <paramref name="model"/>, in the model's order. A name without
    /// wildcards that matches nothing is an <see cref="ErrorIds.AdapterNotFound"/> error (terminating when
    /// <paramref name="terminating"/>); a wildcard that matches nothing is not an error, as with Get-ChildItem.
    /// </summary>
    protected IReadOnlyList<string> ResolveAdapterNames(LoraModel model, IEnumerable<string> patterns, bool terminating = true)
    {
        var names = RunEngine(_ => model.Adapters.Names.ToList(), model);
        var result = new List<string>();
        foreach (var pattern in patterns)
        {
            var wildcard = WildcardPattern.ContainsWildcardCharacters(pattern)
                ? new WildcardPattern(pattern, WildcardOptions.None)
                : null;
            var matches = wildcard is null ? names.Where(n => n == pattern).ToList() : names.Where(wildcard.IsMatch).ToList();
            if (matches.Count == 0 && wildcard is null)
            {
                var message = NotFoundMessage(model, pattern, names);
                if (terminating) ThrowTerminating(ErrorIds.AdapterNotFound, ErrorCategory.ObjectNotFound, message, pattern);
                WriteError(ErrorIds.AdapterNotFound, ErrorCategory.ObjectNotFound, message, pattern);
            }
            result.AddRange(matches.Where(m => !result.Contains(m)));
        }
        return result;
    }

    static string NotFoundMessage(LoraModel model, string name, IReadOnlyList<string> names) => names.Count == 0
        ? $"The model '{model.Name}' has no adapter '{name}'; it has no adapters at all. Add one with Add-LoraAdapter or Import-LoraAdapter."
        : $"The model '{model.Name}' has no adapter '{name}'. Its adapters are: {string.Join(", ", names)}. Names are case-sensitive.";
}
