using System.Collections;
using System.Management.Automation;

namespace LoraPS.Module.Infrastructure;

/// <summary>Turns pipeline objects (Import-Csv rows, [pscustomobject], hashtables) into the records Core's dataset reader takes.</summary>
public static class PipelineRecords
{
    /// <summary>A hashtable's entries, or an object's properties; PSObject wrappers around values are removed.</summary>
    public static IReadOnlyDictionary<string, object?> ToDictionary(PSObject item)
    {
        ArgumentNullException.ThrowIfNull(item);
        var record = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
        if (item.BaseObject is IDictionary dictionary)
        {
            foreach (DictionaryEntry entry in dictionary) record[entry.Key.ToString() ?? ""] = Unwrap(entry.Value);
            return record;
        }
        foreach (var property in item.Properties)
        {
            // Getters can throw (e.g. on some .NET objects); such a property is simply not part of the record.
            object? value;
            try { value = property.Value; }
            catch (GetValueException) { continue; }
            record[property.Name] = Unwrap(value);
        }
        return record;
    }

    static object? Unwrap(object? value) => value is PSObject wrapped ? wrapped.BaseObject : value;
}
